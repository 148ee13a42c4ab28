"""The Kubernetes executor: each build runs repo2docker in its own pod.

Build pods talk to a build daemon (Docker-in-Docker, usually the chart's
DaemonSet) through a socket on their node and push to a registry: Kubernetes
builds always need one (``c.BinderHubService.use_registry = True``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ..errors import BuildFailed, ServiceError
from ..events import BuildEvent, Phase
from ..providers.credentials import GIT_CREDENTIAL_ENV, git_credential_env
from ..repo2docker import parse_log_line
from .base import BuildExecutor, BuildRequest, EmitFunc
from .pod import (
    BUILD_COMPONENT,
    BUILD_ID_ANNOTATION,
    COMPONENT_LABEL,
    CONTAINER_NAME,
    IMAGE_ANNOTATION,
    REF_ANNOTATION,
    REPO_ANNOTATION,
    BuildPodOptions,
    build_pod_name,
    git_credential_secret_name,
    label_selector,
    make_build_pod,
    make_git_credential_secret,
    pick_sticky_node,
)
from .pod_api import PodApi, WatchFailed, WatchPolicy, describe, follow_pod
from .pod_log import follow_log
from .pod_status import FATAL_WAITING_REASONS, PodStatus, pod_status

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


class _LogOutcome:
    """What the log stream learnt: repo2docker's failure reason, if it gave one."""

    failure: str | None = None


class KubernetesExecutor(BuildExecutor):
    """Runs each build in a pod that runs repo2docker against a node's build daemon.

    The pod's name is derived from the repository and ref, so a second request
    for the same build attaches to the pod already running. The executor
    follows the pod with a watch, relays its log as build events, and deletes
    it when the build ends, is cancelled or times out.
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
        "quay.io/jupyterhub/repo2docker:2025.12.0",
        help="""The repo2docker image build pods run.

        Default: ``quay.io/jupyterhub/repo2docker:2025.12.0``. Its tag is the
        builder version the service reports.
        """,
    ).tag(config=True)

    build_command = List(
        Unicode(),
        ["jupyter-repo2docker"],
        help="""The repo2docker executable in the build image, with any leading arguments.

        Passed as the container's ``args``, so the image's entrypoint still runs;
        repo2docker's options follow. Default: ``["jupyter-repo2docker"]``.
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
        help="""Labels added to every build pod; builds are also found by them.

        Default: none. The chart sets ``{'app.kubernetes.io/instance': RELEASE}``
        so that two releases in one namespace keep to their own pods.
        """,
    ).tag(config=True)

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
        60,
        help="""Seconds a build pod's watch may keep failing before the build fails.

        Default: 60. The build then fails with a reason instead of hanging.
        """,
    ).tag(config=True)

    log_drain_timeout = Float(
        30,
        help="Seconds to wait for the rest of a finished pod's log. Default: 30.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api_client: ApiClient | None = None
        self._api_lock = asyncio.Lock()
        self._deletions: dict[str, asyncio.Task[None]] = {}

    async def _api(self) -> PodApi:
        """The executor's one API client, created on first use."""
        async with self._api_lock:
            if self._api_client is None:
                self._api_client = ApiClient(await self._configuration())
        return PodApi(self._api_client, self.namespace, self.request_timeout)

    async def _configuration(self) -> Configuration:
        configuration = Configuration()
        if self.api_url:
            configuration.host = self.api_url
            return configuration
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            await kube_config.load_kube_config(client_configuration=configuration)
        return configuration

    def _selector_labels(self) -> dict[str, str]:
        return {**self.extra_labels, COMPONENT_LABEL: BUILD_COMPONENT}

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
        env = dict(self.build_env)
        secret_name = None
        if request.git_credential:
            # Only the credential is secret: the pod reads it from the build's
            # Secret; the git configuration that scopes it to the origin is plain.
            git_env = git_credential_env(request.git_credential, request.repo_url)
            env.update({k: v for k, v in git_env.items() if k != GIT_CREDENTIAL_ENV})
            secret_name = git_credential_secret_name(build_pod_name(request.repo_url, request.ref))
        return BuildPodOptions(
            build_id=request.build_id,
            repo2docker=self.repo2docker_options(request),
            image=self.build_image,
            command=tuple(self.build_command),
            namespace=self.namespace,
            docker_socket_host_path=self.docker_socket_host_path,
            registry_secret_name=self.registry_secret_name or None,
            registry_secret_key=self.registry_secret_key,
            env=env,
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
        )

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        api = await self._api()
        manifest = make_build_pod(await self.pod_options(request, api))
        name = manifest["metadata"]["name"]
        created = await self._create_or_attach(api, manifest, emit)
        if created is not None and request.git_credential:
            await self._create_credential_secret(api, created, request.git_credential)
        await self._follow_to_the_end(api, name, emit)

    async def _create_credential_secret(
        self, api: PodApi, pod: dict[str, Any], credential: str
    ) -> None:
        """Create the Secret the new build pod reads its git credential from.

        It is created after the pod, since it is owned by it (Kubernetes then
        deletes it with the pod, whoever deletes the pod); the kubelet reads
        it only once the pod is scheduled and its sandbox made. If it cannot
        be created, the pod is deleted and the build fails.
        """
        name = pod["metadata"]["name"]
        try:
            await api.create_secret(make_git_credential_secret(pod, credential))
        except asyncio.CancelledError:
            await asyncio.shield(self._delete(api, name))
            raise
        except Exception as error:
            self.log.error(
                "Storing the git credential of build pod %s failed: %s", name, describe(error)
            )
            await self._delete(api, name)
            raise BuildFailed("The build's git credential could not be stored") from None

    can_reattach = True

    async def reattach(self, request: BuildRequest, emit: EmitFunc) -> None:
        """Follow a build pod started before a restart, as :meth:`run` would.

        Returns when it succeeded; raises :class:`BuildFailed` when it failed or is gone.
        """
        pod_name = build_pod_name(request.repo_url, request.ref)
        api = await self._api()
        self.log.info("Reattaching to build pod %s", pod_name)
        await self._follow_to_the_end(api, pod_name, emit)

    async def recover(self) -> None:
        """Delete build pods that ended while no service followed them.

        Their delayed deletion was lost with the run that started them; pods
        still running are left for the start-up reconciliation to take back.
        """
        api = await self._api()
        try:
            pods = await self.find_build_pods()
        except Exception as error:
            # Not fatal: the pods are only garbage, and the service can start without it.
            self.log.warning("Could not look for ended build pods: %s", describe(error))
            return
        for pod in pods:
            if pod.phase in ("Succeeded", "Failed"):
                self.log.info("Deleting build pod %s, which ended (%s)", pod.pod_name, pod.phase)
                await self._delete(api, pod.pod_name)

    async def find_build_pods(self) -> list[BuildPod]:
        """The build pods of this service in the namespace (from any earlier run)."""
        api = await self._api()
        listing = await api.list(label_selector=label_selector(self._selector_labels()))
        builds = []
        for pod in listing.get("items") or []:
            metadata = pod.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            builds.append(
                BuildPod(
                    pod_name=metadata.get("name", ""),
                    build_id=annotations.get(BUILD_ID_ANNOTATION, ""),
                    repo_url=annotations.get(REPO_ANNOTATION, ""),
                    ref=annotations.get(REF_ANNOTATION, ""),
                    image_name=annotations.get(IMAGE_ANNOTATION, ""),
                    phase=pod_status(pod).phase,
                )
            )
        return builds

    async def _create_or_attach(
        self, api: PodApi, manifest: dict[str, Any], emit: EmitFunc
    ) -> dict[str, Any] | None:
        """Create the build pod and return it, or ``None`` when attaching to a running one."""
        name = manifest["metadata"]["name"]
        pending_deletion = self._deletions.pop(name, None)
        if pending_deletion is not None:
            pending_deletion.cancel()
        try:
            created = await api.create(manifest)
        except ApiException as error:
            if error.status != 409:
                raise
        else:
            self.log.info("Created build pod %s in namespace %s", name, self.namespace)
            emit(BuildEvent(Phase.WAITING, f"Build pod {name} created, waiting for it to start"))
            return created
        existing = await api.read(name)
        if existing is not None and pod_status(existing).phase == "Failed":
            # A failed pod kept for inspection: this request builds again.
            self.log.info("Replacing failed build pod %s", name)
            created = await self._replace(api, manifest)
            emit(BuildEvent(Phase.WAITING, f"Build pod {name} created, waiting for it to start"))
            return created
        self.log.info("Build pod %s exists, attaching to it", name)
        emit(BuildEvent(Phase.WAITING, f"Attaching to build pod {name}, already started"))
        return None

    async def _replace(self, api: PodApi, manifest: dict[str, Any]) -> dict[str, Any]:
        """Delete the pod of ``manifest``'s name (and its Secret), create it anew once free."""
        name = manifest["metadata"]["name"]
        await self._delete(api, name)
        policy = self._watch_policy()
        delay = policy.retry_delay
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.give_up_after
        while True:
            try:
                return await api.create(manifest)
            except ApiException as error:
                if error.status != 409 or loop.time() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(policy.max_retry_delay, delay * 2)

    async def _follow_to_the_end(self, api: PodApi, name: str, emit: EmitFunc) -> None:
        """Follow the pod until it ends, then delete it (at once when cancelled)."""
        try:
            await self._follow(api, name, emit)
        except asyncio.CancelledError:
            if self.detaching:
                self.log.info("Leaving build pod %s running for the next start", name)
                raise
            self.log.info("Build in pod %s cancelled, deleting the pod", name)
            await asyncio.shield(self._delete(api, name))
            raise
        except BaseException:
            self._schedule_deletion(api, name)
            raise
        self._schedule_deletion(api, name)

    async def _follow(self, api: PodApi, name: str, emit: EmitFunc) -> None:
        outcome = _LogOutcome()
        log_task: asyncio.Task[None] | None = None
        reported: str | None = None
        try:
            async for pod in follow_pod(api, name, self._watch_policy(), self.log):
                if pod is None:
                    raise BuildFailed("The build pod was deleted before the build finished")
                status = pod_status(pod)
                if status.started and log_task is None:
                    log_task = asyncio.create_task(self._relay_log(api, name, emit, outcome))
                report = self._report(status, name)
                if report is not None and report != reported:
                    reported = report
                    emit(BuildEvent(Phase.FETCHING if status.started else Phase.WAITING, report))
                if status.waiting_reason in FATAL_WAITING_REASONS:
                    raise BuildFailed(status.failure_reason(self.build_timeout))
                if status.finished:
                    await self._drain(log_task)
                    if status.phase == "Failed":
                        raise BuildFailed(
                            outcome.failure or status.failure_reason(self.build_timeout)
                        )
                    self.log.info("Build pod %s succeeded", name)
                    return
        except WatchFailed as error:
            self.log.error("Lost track of build pod %s: %s", name, error)
            raise BuildFailed(
                "Lost track of the build: the Kubernetes API server stopped answering"
            ) from error
        finally:
            if log_task is not None and not log_task.done():
                log_task.cancel()
                await asyncio.gather(log_task, return_exceptions=True)
        raise BuildFailed("The build pod was deleted before the build finished")

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
        self, api: PodApi, name: str, emit: EmitFunc, outcome: _LogOutcome
    ) -> None:
        try:
            lines = follow_log(api, name, CONTAINER_NAME, self._watch_policy(), self.log)
            async for line in lines:
                parsed = parse_log_line(line)
                if parsed.failure is not None:
                    outcome.failure = parsed.failure
                elif parsed.event is not None:
                    emit(parsed.event)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.log.warning("Reading the log of build pod %s failed: %s", name, describe(error))

    def _schedule_deletion(self, api: PodApi, name: str) -> None:
        """Delete a finished pod after ``delete_finished_pods_after`` seconds."""
        previous = self._deletions.pop(name, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._delete(api, name, self.delete_finished_pods_after))
        self._deletions[name] = task
        task.add_done_callback(lambda done: self._forget_deletion(name, done))

    def _forget_deletion(self, name: str, task: asyncio.Task[None]) -> None:
        if self._deletions.get(name) is task:
            del self._deletions[name]

    async def _delete(self, api: PodApi, name: str, delay: float = 0) -> None:
        """Delete a build pod and its git credential Secret, if it has one.

        The Secret's owner reference would have Kubernetes delete it too; the
        service does not wait for that garbage collection.
        """
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if await api.delete(name):
                self.log.info("Deleted build pod %s", name)
            if await api.delete_secret(git_credential_secret_name(name)):
                self.log.info("Deleted the git credential of build pod %s", name)
        except Exception as error:
            self.log.warning("Deleting build pod %s failed: %s", name, describe(error))

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
        self._deletions.clear()
        for task in deletions.values():
            task.cancel()
        await asyncio.gather(*deletions.values(), return_exceptions=True)
        if deletions:
            api = await self._api()
            await asyncio.gather(*(self._delete(api, name) for name in deletions))
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None
