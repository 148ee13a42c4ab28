"""The Kubernetes executor: each build runs repo2docker in its own pod.

Build pods talk to a build daemon (Docker-in-Docker, usually the chart's
DaemonSet) through a socket on their node and push to a registry: Kubernetes
builds always need one (``c.BinderHubService.use_registry = True``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ..errors import BuildFailed, ServiceError
from ..events import BuildEvent, Phase
from ..failures import FailureClass, OutputClassifier, Step
from ..fetch import source_provider
from ..repo2docker import parse_log_line
from ..step_limits import BuildOutOfMemory, oom_killed
from .base import BuildExecutor, BuildRequest, EmitFunc
from .pod import (
    BUILD_COMMAND,
    BUILD_ID_ANNOTATION,
    COMPONENT_LABEL,
    CONTAINER_NAME,
    IMAGE_ANNOTATION,
    INSTANCE_LABEL,
    REF_ANNOTATION,
    REPO_ANNOTATION,
    SERVICE_IMAGE,
    BuildPodOptions,
    build_pod_name,
    git_credential_secret_name,
    label_selector,
    make_build_pod,
    make_git_credential_secret,
    owner_reference_patch,
    pick_sticky_node,
    selector_labels,
)
from .pod_api import ACCESS_DENIED, PodApi, WatchFailed, WatchPolicy, describe, follow_pod
from .pod_log import follow_log, format_position, parse_position
from .pod_status import (
    CONFIG_WAITING_REASONS,
    FATAL_WAITING_REASONS,
    PULL_WAITING_REASONS,
    PodStatus,
    pod_status,
)

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class BuildPod:
    """A build pod found in the namespace, as recorded in its annotations."""

    pod_name: str
    build_id: str
    repo_url: str
    ref: str
    image_name: str
    phase: str
    uid: str = ""


@dataclass(frozen=True)
class _Target:
    """A build pod as this service created or found it: its deletions apply to it alone."""

    name: str
    uid: str | None
    secret_uid: str | None = None


def _uid(obj: dict[str, Any]) -> str | None:
    uid: str | None = (obj.get("metadata") or {}).get("uid")
    return uid


class _LogOutcome:
    """What the log stream learnt: repo2docker's failure reason and the build pod's class
    of it, if they were given, a classifier that read every line, and
    whether a build step was killed for running out of memory."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.failure_class: FailureClass | None = None
        self.classifier = OutputClassifier(Step.BUILD)
        self.out_of_memory = False

    def failure_class_of(self, status: PodStatus) -> FailureClass:
        """Why the pod failed: its status, else what it said, else what its log shows."""
        return (
            status.failure_class()
            or self.failure_class
            or self.classifier.classify(status.exit_code)
        )


class _Grace:
    """The deadline of a waiting state the kubelet retries (image pulls, container config).

    The state is timed from when it was first seen; leaving it (for another
    group of reasons, or none) cancels the deadline.
    """

    def __init__(self) -> None:
        self.group: frozenset[str] | None = None
        self.deadline: float | None = None
        self.reason = ""

    def update(self, status: PodStatus, now: float, graces: dict[frozenset[str], float]) -> None:
        group = next((g for g in graces if status.waiting_reason in g), None)
        if group is None:
            self.group, self.deadline = None, None
            return
        if group != self.group:
            self.group, self.deadline = group, now + graces[group]
        self.reason = status.waiting_failure()


class KubernetesExecutor(BuildExecutor):
    """Runs each build in a pod that runs repo2docker against a node's build daemon.

    The pod's name is derived from the installation (``instance``), the
    repository and the ref, so a second request for the same build attaches
    to the pod already running, once it has checked the pod is this
    installation's build of the same image; another installation's pod is
    never joined nor deleted. The executor follows the pod with a watch,
    relays its log as build events, and deletes it when the build ends, is
    cancelled or times out.
    """

    name = "kubernetes"

    api_url = Unicode(
        "",
        help="""URL of the Kubernetes API server, used without credentials.

        Empty (the default) loads the in-cluster configuration, or else the
        kube config file. Example: ``http://127.0.0.1:8001`` behind ``kubectl proxy``.
        """,
    ).tag(config=True)

    namespace = Unicode(
        help="""Namespace build pods run in.

        Default: the namespace of the service's own pod (from its service
        account), or ``default`` outside a cluster. Example: ``binder``.
        """,
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE) as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"

    build_image = Unicode(
        SERVICE_IMAGE,
        help=f"""The image build pods run: this project's service image (it holds the
        service, repo2docker, git, the docker CLI and its buildx plugin). The chart sets
        it to the image it runs the service with.

        Default: ``{SERVICE_IMAGE}``. Its tag is the builder version the service reports.
        """,
    ).tag(config=True)

    build_command = List(
        Unicode(),
        list(BUILD_COMMAND),
        minlen=1,
        help=f"""The command build pods run (the container's ``command``; the build spec,
        JSON, is its one argument): it fetches, runs repo2docker and pushes, see
        ``binderhub_service.pod_build``. Default: ``{list(BUILD_COMMAND)}``.
        """,
    ).tag(config=True)

    docker_socket_host_path = Unicode(
        "/var/run/dind/docker.sock",
        help="""Path, on each node, of the build daemon's socket, mounted into build pods.

        Default: ``/var/run/dind/docker.sock`` (where the chart's build daemon
        listens). Example: ``/var/run/docker.sock`` for the node's own engine.
        """,
    ).tag(config=True)

    registry_secret_name = Unicode(
        "",
        help="""Secret with the registry credentials, mounted as ``config.json`` for pushing.

        Empty (the default) mounts none. Example: ``binderhub-service-registry``.
        """,
    ).tag(config=True)

    registry_secret_key = Unicode(
        ".dockerconfigjson",
        help="""Key of the docker config JSON in the registry Secret.

        Default: ``.dockerconfigjson`` (a ``kubernetes.io/dockerconfigjson`` Secret).
        """,
    ).tag(config=True)

    node_selector = Dict(
        Unicode(),
        help="Node selector of build pods. Default: none. Example: ``{'pool': 'builds'}``.",
    ).tag(config=True)

    tolerations = List(
        Dict(),
        [
            {
                "key": "hub.jupyter.org/dedicated",
                "operator": "Equal",
                "value": "user",
                "effect": "NoSchedule",
            }
        ],
        help="""Tolerations of build pods.

        Default: tolerate ``hub.jupyter.org/dedicated=user:NoSchedule``, the taint
        of Zero to JupyterHub's user nodes. Set ``[]`` for none.
        """,
    ).tag(config=True)

    affinity = Dict(
        help="""Affinity of build pods (a Kubernetes ``Affinity`` object). Default: none.

        Example: ``{'nodeAffinity': {...}}``. Sticky builds add a preferred node to it.
        """,
    ).tag(config=True)

    resources = Dict(
        help="""Resource requests and limits of the build container.

        Default: none. Example:
        ``{'requests': {'cpu': '1', 'memory': '1Gi'}, 'limits': {'memory': '4Gi'}}``.
        """,
    ).tag(config=True)

    run_as_user = Int(
        None,
        allow_none=True,
        help="""User id build pods run as; a non-zero id also sets ``runAsNonRoot``.

        Default: ``None`` (the image's user). The user must be able to use the
        build daemon's socket (see ``supplemental_groups``). Example: ``1000``.
        """,
    ).tag(config=True)

    run_as_group = Int(
        None, allow_none=True, help="Group id build pods run as. Default: the image's."
    ).tag(config=True)

    supplemental_groups = List(
        Int(),
        help="Extra group ids of build pods, e.g. the socket's group: ``[998]``. Default: none.",
    ).tag(config=True)

    image_pull_secrets = List(
        Unicode(),
        help="Secrets to pull the build image with. Default: none. Example: ``['quay-pull']``.",
    ).tag(config=True)

    extra_labels = Dict(
        Unicode(),
        help="""Labels added to every build pod. Default: none.

        The chart sets ``{'app.kubernetes.io/instance': RELEASE}``, which is
        also the default of ``instance``.
        """,
    ).tag(config=True)

    instance = Unicode(
        help="""Name of this installation (the Helm release), scoping build pods.

        Build pod names hash it and pods carry it as the label
        ``app.kubernetes.io/instance``: two installations in one namespace
        never share, follow or delete each other's pods. Default: the
        ``app.kubernetes.io/instance`` of ``extra_labels``, else empty (unscoped).
        Example: ``binder``.
        """,
    ).tag(config=True)

    @default("instance")
    def _default_instance(self) -> str:
        return self.extra_labels.get(INSTANCE_LABEL, "")

    extra_annotations = Dict(
        Unicode(), help="Annotations added to every build pod. Default: none."
    ).tag(config=True)

    build_timeout = Int(
        help="""Seconds a build pod may exist before Kubernetes stops it (activeDeadlineSeconds).

        Default: ``c.BuildManager.build_timeout`` when set, else 3600. The service
        cancels builds at its own timeout; this limit also holds while it is down.
        0 sets no limit.
        """,
    ).tag(config=True)

    @default("build_timeout")
    def _default_build_timeout(self) -> int:
        if "BuildManager" in self.config and "build_timeout" in self.config.BuildManager:
            return int(self.config.BuildManager.build_timeout)
        return 3600

    delete_finished_pods_after = Float(
        0,
        help="""Seconds to keep a finished build pod before deleting it.

        Default: 0 (delete at once). Example: 600, to inspect failed pods with
        ``kubectl``. Pods of cancelled or timed-out builds are deleted at once.
        """,
    ).tag(config=True)

    sticky_builds = Bool(
        False,
        help="""Prefer to build a repository on the same node each time.

        The node is picked by rendezvous hashing among the nodes that run a
        build daemon pod (``build_daemon_label_selector``), so its image cache
        likely holds earlier layers. Default: False.
        """,
    ).tag(config=True)

    build_daemon_label_selector = Unicode(
        "component=binderhub-build-daemon",
        help="""Label selector of the build daemon pods, for sticky builds.

        Default: ``component=binderhub-build-daemon`` (the chart's DaemonSet).
        """,
    ).tag(config=True)

    request_timeout = Float(
        30,
        help="Seconds to wait for one Kubernetes API request (not watches or logs). Default: 30.",
    ).tag(config=True)

    watch_timeout = Int(
        300,
        help="""Seconds one watch request lasts before it is renewed. Default: 300.""",
    ).tag(config=True)

    watch_retry_delay = Float(
        0.5,
        help="""Seconds before retrying a failed watch, doubled at each failure in a row.

        Default: 0.5, up to ``watch_max_retry_delay``.
        """,
    ).tag(config=True)

    watch_max_retry_delay = Float(
        10, help="Longest wait, in seconds, between watch retries. Default: 10."
    ).tag(config=True)

    watch_give_up_after = Float(
        help="""Seconds a build pod's watch may keep failing before the build fails.

        Default: ``build_timeout`` (3600 when that is 0): the pod keeps
        building through an API server outage, so a shorter outage must not
        fail it. The build then fails with a reason instead of hanging.
        """,
    ).tag(config=True)

    @default("watch_give_up_after")
    def _default_watch_give_up_after(self) -> float:
        return float(self.build_timeout or 3600)

    container_config_grace = Float(
        60,
        help="""Seconds a build container may wait in ``CreateContainerConfigError``.

        The kubelet retries it (a Secret created a moment late, for one); the
        build fails with the kubelet's message only when it lasts. Default: 60.
        """,
    ).tag(config=True)

    image_pull_timeout = Float(
        300,
        help="""Seconds the build image may keep failing to pull before the build fails.

        Counted from the first ``ErrImagePull`` or ``ImagePullBackOff``; the
        build then fails with the kubelet's message. Default: 300.
        """,
    ).tag(config=True)

    terminating_pod_timeout = Float(
        120,
        help="""Seconds to wait for a terminating build pod of the same name to go.

        A pod being deleted is never joined: the build waits for it to go,
        then creates its own, and fails if it does not go in time. Default: 120.
        """,
    ).tag(config=True)

    cancel_grace_period = Int(
        5,
        help="""Seconds a cancelled build pod has to stop before it is killed.

        Default: 5 (Kubernetes' own default is 30).
        """,
    ).tag(config=True)

    log_read_timeout = Float(
        300,
        help="""Seconds a build log stream may stay silent before it is opened again.

        A dead connection looks like a quiet build; reading again costs
        nothing when the build is only quiet. Default: 300.
        """,
    ).tag(config=True)

    connection_pool_size = Int(
        help="""Connections the Kubernetes client may hold open at once.

        Each running build holds two (its pod's watch and its log). Default:
        ``2 * c.BuildManager.max_concurrent_builds + 10``, at least 100
        (the client's own default).
        """,
    ).tag(config=True)

    @default("connection_pool_size")
    def _default_connection_pool_size(self) -> int:
        builds = 4
        if "BuildManager" in self.config and "max_concurrent_builds" in self.config.BuildManager:
            builds = int(self.config.BuildManager.max_concurrent_builds)
        return max(100, 2 * builds + 10)

    log_drain_timeout = Float(
        30,
        help="Seconds to wait for the rest of a finished pod's log. Default: 30.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api_client: ApiClient | None = None
        self._api_lock = asyncio.Lock()
        self._deletions: dict[str, asyncio.Task[None]] = {}
        self._deletion_targets: dict[str, _Target] = {}
        # Pods a run or reattach follows now: recover() leaves them alone.
        self._following: set[str] = set()

    async def _api(self) -> PodApi:
        """The executor's one API client, created on first use."""
        async with self._api_lock:
            if self._api_client is None:
                self._api_client = ApiClient(await self._configuration())
        return PodApi(self._api_client, self.namespace, self.request_timeout)

    async def _configuration(self) -> Configuration:
        configuration = Configuration()
        configuration.connection_pool_maxsize = self.connection_pool_size
        if self.api_url:
            configuration.host = self.api_url
            return configuration
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            await kube_config.load_kube_config(client_configuration=configuration)
        return configuration

    def _selector_labels(self) -> dict[str, str]:
        return selector_labels(self.instance)

    def _pod_name(self, request: BuildRequest) -> str:
        return build_pod_name(request.repo_url, request.ref, self.instance)

    def _watch_policy(self) -> WatchPolicy:
        return WatchPolicy(
            timeout_seconds=self.watch_timeout,
            retry_delay=self.watch_retry_delay,
            max_retry_delay=self.watch_max_retry_delay,
            give_up_after=self.watch_give_up_after,
        )

    async def _sticky_node(self, api: PodApi, repo_url: str) -> str | None:
        listing = await api.list(label_selector=self.build_daemon_label_selector)
        nodes = [
            node
            for pod in listing.get("items") or []
            if (pod.get("status") or {}).get("phase") == "Running"
            for node in [(pod.get("spec") or {}).get("nodeName")]
            if node
        ]
        return pick_sticky_node(repo_url, nodes)

    async def pod_options(self, request: BuildRequest, api: PodApi) -> BuildPodOptions:
        """The options of ``request``'s build pod, from this executor's configuration."""
        sticky_node = await self._sticky_node(api, request.repo_url) if self.sticky_builds else None
        secret_name = None
        if request.git_credential:
            # The pod's fetch step reads the credential from the build's Secret.
            secret_name = git_credential_secret_name(self._pod_name(request))
        return BuildPodOptions(
            build_id=request.build_id,
            repo2docker=self.repo2docker_options(request),
            content_provider=source_provider(request.content_providers),
            instance=self.instance,
            image=self.build_image,
            command=tuple(self.build_command),
            namespace=self.namespace,
            docker_socket_host_path=self.docker_socket_host_path,
            registry_secret_name=self.registry_secret_name or None,
            registry_secret_key=self.registry_secret_key,
            env=dict(self.build_env),
            resources=self.resources,
            node_selector=self.node_selector,
            tolerations=tuple(self.tolerations),
            affinity=self.affinity,
            sticky_node=sticky_node,
            active_deadline_seconds=self.build_timeout or None,
            run_as_user=self.run_as_user,
            run_as_group=self.run_as_group,
            supplemental_groups=tuple(self.supplemental_groups),
            image_pull_secrets=tuple(self.image_pull_secrets),
            extra_labels=self.extra_labels,
            extra_annotations=self.extra_annotations,
            git_credential_secret_name=secret_name,
            fetch_timeout=self.fetch_timeout,
        )

    def memory_limit(self) -> int | str | None:
        """The build steps' limit if set, else the build container's (``resources``)."""
        step_limit = super().memory_limit()
        if step_limit is not None:
            return step_limit
        limits = self.resources.get("limits") or {}
        limit = limits.get("memory") if isinstance(limits, dict) else None
        return limit if isinstance(limit, int | str) else None

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        api = await self._api()
        name = self._pod_name(request)
        self._following.add(name)
        try:
            with self._access_errors():
                manifest = make_build_pod(await self.pod_options(request, api))
                secret = None
                secret_uid = None
                if request.git_credential:
                    secret = make_git_credential_secret(manifest, request.git_credential)
                    secret_uid = await self._store_secret(api, secret)
                try:
                    pod = await self._create_or_attach(api, manifest, emit)
                    if secret is not None:
                        await self._own_secret(api, secret, pod)
                except BaseException:
                    if secret is not None:
                        await asyncio.shield(self._delete_secret(api, name, secret_uid))
                    raise
                target = _Target(name, _uid(pod), secret_uid)
                await self._follow_to_the_end(api, target, emit)
        finally:
            self._following.discard(name)

    @contextmanager
    def _access_errors(self) -> Iterator[None]:
        """Turn the API server's 401 and 403 into build failures that say what to check."""
        try:
            yield
        except ApiException as error:
            if error.status == 401:
                raise BuildFailed(
                    "The Kubernetes API server did not accept the service's credentials"
                    " (HTTP 401 Unauthorized): check its service account token"
                ) from None
            if error.status == 403:
                raise BuildFailed(
                    "The service may not manage build pods in namespace"
                    f" {self.namespace} (HTTP 403 Forbidden): check its Role"
                ) from None
            raise

    async def _store_secret(self, api: PodApi, secret: dict[str, Any]) -> str | None:
        """Create the build's git credential Secret, before its pod; return its uid.

        The kubelet reads it when it creates the container, so it must exist
        by then (a moment late only costs a retried ``CreateContainerConfigError``).
        A leftover Secret of the same name (of a pod gone before it could own
        it) is replaced: it may hold an older credential.
        """
        name = secret["metadata"]["name"]
        try:
            for _ in range(3):
                try:
                    return _uid(await api.create_secret(secret))
                except ApiException as error:
                    if error.status != 409:
                        raise
                self.log.info("Replacing the leftover git credential Secret %s", name)
                await api.delete_secret(name)
            raise BuildFailed("The build's git credential could not be stored: it kept existing")
        except ApiException as error:
            if error.status in ACCESS_DENIED:
                raise
            self.log.error("Storing git credential Secret %s failed: %s", name, describe(error))
            raise BuildFailed("The build's git credential could not be stored") from None

    async def _own_secret(self, api: PodApi, secret: dict[str, Any], pod: dict[str, Any]) -> None:
        """Make the build pod own its Secret, so that Kubernetes deletes both together."""
        await api.patch_secret(secret["metadata"]["name"], owner_reference_patch(pod))

    can_reattach = True

    async def reattach(self, request: BuildRequest, emit: EmitFunc) -> None:
        """Follow a build pod started before a restart, as :meth:`run` would.

        Its log is relayed after ``request.resume_after``, the last line
        already recorded, so that no line is lost or repeated; a pod that
        finished while no service followed it has the rest of its log relayed
        and its outcome reported. Returns when it succeeded; raises
        :class:`BuildFailed` when it failed or is gone.
        """
        pod_name = self._pod_name(request)
        # Before any await: recover(), run after reconciliation, must see it.
        self._following.add(pod_name)
        try:
            api = await self._api()
            self.log.info("Reattaching to build pod %s", pod_name)
            with self._access_errors():
                pod = await api.read(pod_name)
                if pod is None:
                    raise BuildFailed(
                        "The build pod was deleted before the build finished",
                        failure_class=FailureClass.INTERRUPTED,
                    )
                # Its Secret, if any, is owned by it: Kubernetes deletes both together.
                target = _Target(pod_name, _uid(pod))
                await self._follow_to_the_end(api, target, emit, request.resume_after)
        finally:
            self._following.discard(pod_name)

    async def prepare(self) -> None:
        """Say where the build step limits are enforced: beside the build daemon."""
        limits = self.step_limits
        if limits.active:
            self.log.info(
                "Build steps run in the build daemon, which must enforce the step limits "
                "(%s) itself: the Helm chart's buildDaemon.stepLimits does; the service "
                "only names them when a step runs out of memory.",
                limits.describe(),
            )

    async def recover(self) -> None:
        """Delete build pods that ended while no service followed them.

        Their delayed deletion was lost with the run that started them. Run
        it after the start-up reconciliation: pods it took back (running or
        ended, their builds now reattached) are left to their builds.
        """
        api = await self._api()
        try:
            pods = await self.find_build_pods()
        except Exception as error:
            # Not fatal: the pods are only garbage, and the service can start without it.
            self.log.warning("Could not look for ended build pods: %s", describe(error))
            return
        for pod in pods:
            if pod.phase in ("Succeeded", "Failed") and pod.pod_name not in self._following:
                self.log.info("Deleting build pod %s, which ended (%s)", pod.pod_name, pod.phase)
                await self._delete(api, pod.pod_name, pod.uid or None)

    async def find_build_pods(self) -> list[BuildPod]:
        """The build pods of this installation in the namespace (from any earlier run)."""
        api = await self._api()
        wanted = self._selector_labels()
        listing = await api.list(label_selector=label_selector(wanted))
        builds = []
        for pod in listing.get("items") or []:
            metadata = pod.get("metadata") or {}
            labels = metadata.get("labels") or {}
            # Filter here too: a selector is a request, the labels are the contract.
            if any(labels.get(key) != value for key, value in wanted.items()):
                continue
            annotations = metadata.get("annotations") or {}
            builds.append(
                BuildPod(
                    pod_name=metadata.get("name", ""),
                    build_id=annotations.get(BUILD_ID_ANNOTATION, ""),
                    repo_url=annotations.get(REPO_ANNOTATION, ""),
                    ref=annotations.get(REF_ANNOTATION, ""),
                    image_name=annotations.get(IMAGE_ANNOTATION, ""),
                    phase=pod_status(pod).phase,
                    uid=metadata.get("uid", ""),
                )
            )
        return builds

    def _is_ours(self, pod: dict[str, Any], manifest: dict[str, Any]) -> bool:
        """Whether ``pod`` is this installation's build of ``manifest``'s image."""
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        wanted = manifest["metadata"]["annotations"][IMAGE_ANNOTATION]
        own = manifest["metadata"]["labels"]
        return (
            annotations.get(IMAGE_ANNOTATION) == wanted
            and labels.get(COMPONENT_LABEL) == own[COMPONENT_LABEL]
            # Also when unscoped: a pod of some installation is not ours.
            and labels.get(INSTANCE_LABEL) == own.get(INSTANCE_LABEL)
        )

    async def _create_or_attach(
        self, api: PodApi, manifest: dict[str, Any], emit: EmitFunc
    ) -> dict[str, Any]:
        """Create the build pod, or attach to this installation's running one; return it.

        A terminating pod of the name is waited out, a failed one (kept for
        inspection) replaced; a pod that is not ours fails the build and is
        left alone.
        """
        name = manifest["metadata"]["name"]
        pending_deletion = self._deletions.pop(name, None)
        self._deletion_targets.pop(name, None)
        if pending_deletion is not None:
            pending_deletion.cancel()
        for _ in range(5):
            try:
                created = await api.create(manifest)
            except ApiException as error:
                if error.status != 409:
                    raise
            else:
                self.log.info("Created build pod %s in namespace %s", name, self.namespace)
                message = f"Build pod {name} created, waiting for it to start"
                emit(BuildEvent(Phase.WAITING, message))
                return created
            existing = await api.read(name)
            if existing is None:
                continue  # deleted between the two requests: create it again
            if not self._is_ours(existing, manifest):
                self.log.error("Pod %s exists and is not this service's build; left alone", name)
                raise BuildFailed(
                    f"A pod named {name} exists in namespace {self.namespace} and is not"
                    " this service's build of this image; it was left alone"
                )
            status = pod_status(existing)
            if status.terminating:
                emit(BuildEvent(Phase.WAITING, f"Waiting for the old build pod {name} to go"))
                await self._wait_until_gone(api, name)
            elif status.phase == "Failed":
                # A failed pod kept for inspection: this request builds again.
                self.log.info("Replacing failed build pod %s", name)
                await self._delete(api, name, _uid(existing))
                await self._wait_until_gone(api, name)
            else:
                self.log.info("Build pod %s exists, attaching to it", name)
                emit(BuildEvent(Phase.WAITING, f"Attaching to build pod {name}, already started"))
                return existing
        raise BuildFailed(f"The build pod {name} could not be created: its name stayed taken")

    async def _wait_until_gone(self, api: PodApi, name: str) -> None:
        """Wait, at most ``terminating_pod_timeout`` seconds, until pod ``name`` is gone."""
        try:
            async with asyncio.timeout(self.terminating_pod_timeout):
                async for pod in follow_pod(api, name, self._watch_policy(), self.log):
                    if pod is None:
                        return
        except TimeoutError:
            raise BuildFailed(
                f"The old build pod {name} was still terminating after"
                f" {self.terminating_pod_timeout:g} s"
            ) from None
        except WatchFailed as error:
            raise BuildFailed(
                "Lost track of the build: the Kubernetes API server stopped answering"
            ) from error

    async def _follow_to_the_end(
        self, api: PodApi, target: _Target, emit: EmitFunc, resume_after: str | None = None
    ) -> None:
        """Follow the pod until it ends, then delete it (at once when cancelled)."""
        name = target.name
        try:
            await self._follow(api, name, emit, target.uid, resume_after)
        except asyncio.CancelledError:
            if self.detaching:
                self.log.info("Leaving build pod %s running for the next start", name)
                raise
            self.log.info("Build in pod %s cancelled, deleting the pod", name)
            deletion = self._delete(
                api, name, target.uid, target.secret_uid, grace_period=self.cancel_grace_period
            )
            await asyncio.shield(deletion)
            raise
        except BaseException:
            self._schedule_deletion(api, target)
            raise
        self._schedule_deletion(api, target)

    async def _follow(
        self,
        api: PodApi,
        name: str,
        emit: EmitFunc,
        uid: str | None,
        resume_after: str | None = None,
    ) -> None:
        outcome = _LogOutcome()
        log_task: asyncio.Task[None] | None = None
        reported: str | None = None
        grace = _Grace()
        loop = asyncio.get_running_loop()
        updates = follow_pod(api, name, self._watch_policy(), self.log)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(grace.deadline):
                        pod = await anext(updates)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise BuildFailed(grace.reason) from None
                if pod is None or (uid is not None and _uid(pod) != uid):
                    # Gone, or gone and replaced under its name (by another request).
                    raise BuildFailed(
                        "The build pod was deleted before the build finished",
                        failure_class=FailureClass.INTERRUPTED,
                    )
                status = pod_status(pod)
                if status.started and log_task is None:
                    log_task = asyncio.create_task(
                        self._relay_log(api, name, emit, outcome, resume_after)
                    )
                report = self._report(status, name)
                if report is not None and report != reported:
                    reported = report
                    emit(BuildEvent(Phase.FETCHING if status.started else Phase.WAITING, report))
                if status.finished:
                    await self._drain(log_task)
                    if status.phase == "Failed":
                        if status.out_of_memory:
                            # The pod's own limit killed it: that explains whatever
                            # repo2docker said as it died.
                            raise BuildFailed(
                                status.failure_reason(self.build_timeout),
                                failure_class=FailureClass.OUT_OF_MEMORY,
                            )
                        if outcome.out_of_memory:
                            raise BuildOutOfMemory(self.step_limits.memory)
                        raise BuildFailed(
                            outcome.failure or status.failure_reason(self.build_timeout),
                            failure_class=outcome.failure_class_of(status),
                        )
                    self.log.info("Build pod %s succeeded", name)
                    return
                if status.terminating:
                    raise BuildFailed(
                        "The build pod is being deleted (by someone else, or with its node)",
                        failure_class=FailureClass.INTERRUPTED,
                    )
                if status.waiting_reason in FATAL_WAITING_REASONS:
                    raise BuildFailed(status.failure_reason(self.build_timeout))
                grace.update(status, loop.time(), self._graces())
        except WatchFailed as error:
            self.log.error("Lost track of build pod %s: %s", name, error)
            raise BuildFailed(
                "Lost track of the build: the Kubernetes API server stopped answering"
            ) from error
        finally:
            await updates.aclose()
            if log_task is not None and not log_task.done():
                log_task.cancel()
                await asyncio.gather(log_task, return_exceptions=True)
        raise BuildFailed(
            "The build pod was deleted before the build finished",
            failure_class=FailureClass.INTERRUPTED,
        )

    def _graces(self) -> dict[frozenset[str], float]:
        """How long each group of retried waiting reasons may last, in seconds."""
        return {
            CONFIG_WAITING_REASONS: self.container_config_grace,
            PULL_WAITING_REASONS: self.image_pull_timeout,
        }

    @staticmethod
    def _report(status: PodStatus, name: str) -> str | None:
        """The one-line progress report a pod's status deserves, if any."""
        if status.phase == "Pending" and not status.started:
            return status.waiting_summary()
        if status.phase == "Running":
            node = f" on node {status.node_name}" if status.node_name else ""
            return f"Build pod {name} started{node}"
        return None

    async def _drain(self, log_task: asyncio.Task[None] | None) -> None:
        """Let the log stream deliver its last lines, within ``log_drain_timeout``."""
        if log_task is None:
            return
        done, _ = await asyncio.wait({log_task}, timeout=self.log_drain_timeout)
        if not done:
            self.log.warning("The build log did not end in time, cutting it off")

    async def _relay_log(
        self,
        api: PodApi,
        name: str,
        emit: EmitFunc,
        outcome: _LogOutcome,
        resume_after: str | None,
    ) -> None:
        """Relay the pod's log as events, each with its position; skip lines up to ``resume_after``.

        Skipped lines are still read: a failure repo2docker reported among
        them is the build's failure reason all the same.
        """
        recorded = parse_position(resume_after)
        try:
            lines = follow_log(
                api, name, CONTAINER_NAME, self._watch_policy(), self.log, self.log_read_timeout
            )
            async for position, line in lines:
                parsed = parse_log_line(line)
                outcome.classifier.feed(parsed.text)
                if parsed.failure is not None:
                    outcome.failure = parsed.failure
                    outcome.failure_class = parsed.failure_class
                elif parsed.event is not None:
                    outcome.out_of_memory = outcome.out_of_memory or oom_killed(
                        parsed.event.message
                    )
                    if recorded is None or position > recorded:
                        emit(
                            dataclasses.replace(
                                parsed.event, log_position=format_position(position)
                            )
                        )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.log.warning("Reading the log of build pod %s failed: %s", name, describe(error))

    def _schedule_deletion(self, api: PodApi, target: _Target) -> None:
        """Delete a finished pod after ``delete_finished_pods_after`` seconds."""
        name = target.name
        previous = self._deletions.pop(name, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(
            self._delete(
                api, name, target.uid, target.secret_uid, delay=self.delete_finished_pods_after
            )
        )
        self._deletions[name] = task
        self._deletion_targets[name] = target
        task.add_done_callback(lambda done: self._forget_deletion(name, done))

    def _forget_deletion(self, name: str, task: asyncio.Task[None]) -> None:
        if self._deletions.get(name) is task:
            del self._deletions[name]
            self._deletion_targets.pop(name, None)

    async def _delete(
        self,
        api: PodApi,
        name: str,
        uid: str | None,
        secret_uid: str | None = None,
        delay: float = 0,
        grace_period: int | None = None,
    ) -> None:
        """Delete build pod ``name`` of ``uid``, and its git credential Secret of ``secret_uid``.

        The uids make each deletion apply only to the object meant: a pod
        (or Secret) that replaced it under the same name, for a later build,
        is left alone. The Secret's owner reference has Kubernetes delete it
        with its pod too; the service does not wait for that garbage
        collection when it knows the Secret's uid.
        """
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if await api.delete(name, grace_period, uid):
                self.log.info("Deleted build pod %s", name)
        except ApiException as error:
            if error.status == 409:
                self.log.info("Build pod %s was replaced by a later build's; left alone", name)
                return
            self.log.warning("Deleting build pod %s failed: %s", name, describe(error))
        except Exception as error:
            self.log.warning("Deleting build pod %s failed: %s", name, describe(error))
        if secret_uid is not None:
            await self._delete_secret(api, name, secret_uid)

    async def _delete_secret(self, api: PodApi, pod_name: str, uid: str | None) -> None:
        """Delete build pod ``pod_name``'s git credential Secret of ``uid``, if it still exists."""
        try:
            if await api.delete_secret(git_credential_secret_name(pod_name), uid):
                self.log.info("Deleted the git credential of build pod %s", pod_name)
        except ApiException as error:
            if error.status == 409:
                self.log.info("The git credential of build pod %s was replaced; left", pod_name)
                return
            self.log.warning(
                "Deleting the git credential of build pod %s failed: %s", pod_name, describe(error)
            )
        except Exception as error:
            self.log.warning(
                "Deleting the git credential of build pod %s failed: %s", pod_name, describe(error)
            )

    async def has_image(self, image_name: str) -> bool:
        """Not available: Kubernetes builds push to a registry, where images are looked up."""
        raise ServiceError(
            "The Kubernetes executor needs a registry: set c.BinderHubService.use_registry = True"
        )

    async def health(self) -> dict[str, Any]:
        """Check that the API server answers a pod list in the namespace."""
        api = await self._api()
        await api.list(limit=1)
        return {"namespace": self.namespace}

    def builder_version(self) -> str:
        """The build image's tag (or digest), e.g. ``2025.12.0``."""
        image = self.build_image
        if "@" in image:
            return image.split("@", 1)[1]
        last = image.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    async def shutdown(self) -> None:
        """Delete pods waiting for deletion now, then close the API client."""
        deletions = dict(self._deletions)
        targets = dict(self._deletion_targets)
        self._deletions.clear()
        self._deletion_targets.clear()
        for task in deletions.values():
            task.cancel()
        await asyncio.gather(*deletions.values(), return_exceptions=True)
        if deletions:
            api = await self._api()
            await asyncio.gather(
                *(
                    self._delete(api, target.name, target.uid, target.secret_uid)
                    for name in deletions
                    if (target := targets.get(name)) is not None
                )
            )
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None
