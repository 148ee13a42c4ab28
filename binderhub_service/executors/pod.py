"""Build pod manifests: pure functions from typed options to Kubernetes dicts.

Nothing here does I/O. :func:`make_build_pod` turns :class:`BuildPodOptions`
into the pod the Kubernetes executor creates; :func:`build_pod_name` gives the
deterministic pod name of a build, so that two requests of one installation
for the same repository and ref meet at the same pod (and two installations in
one namespace never do); :func:`pick_sticky_node` chooses the
node whose image cache most likely holds a repository's earlier layers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..git_credentials import GIT_CREDENTIAL_ENV
from ..pod_build import BuildSpec
from ..repo2docker import GIT_CONTENT_PROVIDER, Repo2DockerOptions

# The label every build pod carries; find and watch build pods by it. The
# value is this project's own: BinderHub's (``binderhub-build``) is cleaned up
# by BinderHub's own pod reaper in a shared namespace.
COMPONENT_LABEL = "component"
BUILD_COMPONENT = "binderhub-service-build"
# The installation (Helm release) a build pod belongs to.
INSTANCE_LABEL = "app.kubernetes.io/instance"
BUILD_ID_LABEL = "binderhub-service/build-id"

# Annotations recording what a pod builds, read back when reattaching.
ANNOTATION_PREFIX = "binderhub-service/"
REPO_ANNOTATION = ANNOTATION_PREFIX + "repo"
REF_ANNOTATION = ANNOTATION_PREFIX + "ref"
IMAGE_ANNOTATION = ANNOTATION_PREFIX + "image"
BUILD_ID_ANNOTATION = ANNOTATION_PREFIX + "build-id"

CONTAINER_NAME = "repo2docker"
# The image build pods run: this project's own (repo2docker, git, the docker CLI, buildx).
SERVICE_IMAGE = f"ghcr.io/binderhub-service/binderhub-service:{__version__}"
BUILD_COMMAND = ("python", "-m", "binderhub_service.pod_build")
DOCKER_SOCKET_PATH = "/var/run/docker.sock"
DOCKER_CONFIG_DIR = "/etc/binderhub-service/docker"
# The pod's emptyDir: the build's checkout, repo2docker's home and config.
TMP_DIR = "/tmp"

_NAME_MAX = 63
_HASH_LENGTH = 10


@dataclass(frozen=True)
class BuildPodOptions:
    """Everything that decides one build pod's manifest.

    ``repo2docker`` holds the build itself (repository, ref, image name, push)
    and ``content_provider`` what fetches it; ``env`` is repo2docker's extra
    environment (never the pod's); the other fields say where and how the pod
    runs. Mappings and sequences are copied into the manifest, never shared with it.
    """

    build_id: str
    repo2docker: Repo2DockerOptions
    # The installation (Helm release) the pod belongs to: scopes its name and labels.
    instance: str = ""
    content_provider: str = GIT_CONTENT_PROVIDER
    image: str = SERVICE_IMAGE
    command: tuple[str, ...] = BUILD_COMMAND
    namespace: str | None = None
    docker_socket_host_path: str = "/var/run/dind/docker.sock"
    registry_secret_name: str | None = None
    registry_secret_key: str = ".dockerconfigjson"
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    sticky_node: str | None = None
    active_deadline_seconds: int | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: Sequence[int] = ()
    service_account_name: str | None = None
    image_pull_secrets: Sequence[str] = ()
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    extra_annotations: Mapping[str, str] = field(default_factory=dict)
    # The Secret holding the build's GIT_CREDENTIAL_ENV (see make_git_credential_secret).
    git_credential_secret_name: str | None = None
    # Seconds the pod's fetch step may take.
    fetch_timeout: float = 600.0


def _escape(text: str) -> str:
    """Lower-case DNS-1123 label characters only, runs of others become one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build_pod_name(repo_url: str, ref: str, instance: str = "") -> str:
    """The deterministic pod name of installation ``instance``'s build of ``repo_url`` at ``ref``.

    ``build-<slug>-<hash>``: the slug (from the repository's last path parts)
    is for people, the hash of the installation, full URL and ref makes the
    name unique. The result is a valid DNS-1123 label of at most 63 characters.
    """
    key = f"{instance}\0{repo_url}\0{ref}" if instance else f"{repo_url}\0{ref}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_LENGTH]
    path = re.sub(r"^[a-z][a-z0-9+.-]*://", "", repo_url.lower()).rstrip("/")
    path = re.sub(r"\.git$", "", path)
    slug = _escape("-".join(path.split("/")[-2:]))
    room = _NAME_MAX - len("build--") - _HASH_LENGTH
    slug = slug[:room].rstrip("-")
    return f"build-{slug}-{digest}" if slug else f"build-{digest}"


def label_value(text: str) -> str:
    """``text`` made into a valid label value (at most 63 characters, alphanumeric ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:_NAME_MAX]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def selector_labels(instance: str) -> dict[str, str]:
    """The labels that tell installation ``instance``'s build pods from any other pod."""
    labels = {COMPONENT_LABEL: BUILD_COMPONENT}
    if instance:
        labels[INSTANCE_LABEL] = label_value(instance)
    return labels


def build_pod_labels(build_id: str, extra: Mapping[str, str], instance: str = "") -> dict[str, str]:
    """The labels of a build pod; ``extra`` comes first, ours win."""
    return {
        **extra,
        **selector_labels(instance),
        BUILD_ID_LABEL: label_value(build_id),
        "app.kubernetes.io/name": "binderhub-service",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "binderhub-service",
    }


def label_selector(labels: Mapping[str, str]) -> str:
    """A Kubernetes equality label selector matching all of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _node_affinity_for(node: str) -> dict[str, Any]:
    return {
        "weight": 100,
        "preference": {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]
        },
    }


def _affinity(options: BuildPodOptions) -> dict[str, Any]:
    affinity: dict[str, Any] = {key: dict(value) for key, value in options.affinity.items()}
    if options.sticky_node:
        node_affinity = affinity.setdefault("nodeAffinity", {})
        preferred = list(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution", []))
        preferred.append(_node_affinity_for(options.sticky_node))
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return affinity


def _security_context(options: BuildPodOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: no privileges, non-root when a user is given."""
    pod: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if options.run_as_user is not None:
        pod["runAsUser"] = options.run_as_user
        pod["runAsNonRoot"] = options.run_as_user != 0
    if options.run_as_group is not None:
        pod["runAsGroup"] = options.run_as_group
    if options.supplemental_groups:
        pod["supplementalGroups"] = list(options.supplemental_groups)
    container = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _volumes(options: BuildPodOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {
            "name": "docker-socket",
            "hostPath": {"path": options.docker_socket_host_path, "type": "Socket"},
        },
        {"name": "build-tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "docker-socket", "mountPath": DOCKER_SOCKET_PATH},
        {"name": "build-tmp", "mountPath": TMP_DIR},
    ]
    if options.registry_secret_name:
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": options.registry_secret_name,
                    "items": [{"key": options.registry_secret_key, "path": "config.json"}],
                },
            }
        )
        mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True})
    return volumes, mounts


def _env(options: BuildPodOptions) -> list[dict[str, Any]]:
    """The pod's environment: the engine, and the git credential the fetch step reads."""
    env: dict[str, dict[str, Any]] = {
        "DOCKER_HOST": {"name": "DOCKER_HOST", "value": f"unix://{DOCKER_SOCKET_PATH}"}
    }
    if options.git_credential_secret_name:
        secret_ref = {"name": options.git_credential_secret_name, "key": GIT_CREDENTIAL_ENV}
        env[GIT_CREDENTIAL_ENV] = {
            "name": GIT_CREDENTIAL_ENV,
            "valueFrom": {"secretKeyRef": secret_ref},
        }
    return [env[name] for name in sorted(env)]


def build_spec(options: BuildPodOptions) -> BuildSpec:
    """What the pod's :mod:`~binderhub_service.pod_build` is told to build (nothing secret)."""
    return BuildSpec(
        repo2docker=options.repo2docker,
        content_provider=options.content_provider,
        registry_config_dir=DOCKER_CONFIG_DIR if options.registry_secret_name else None,
        env=dict(options.env),
        fetch_timeout=options.fetch_timeout,
    )


def make_build_pod(options: BuildPodOptions) -> dict[str, Any]:
    """The manifest of the pod that fetches, builds and pushes one image (see pod_build)."""
    r2d = options.repo2docker
    pod_security, container_security = _security_context(options)
    volumes, mounts = _volumes(options)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image,
        "command": list(options.command),
        "args": [build_spec(options).to_json()],
        "env": _env(options),
        "volumeMounts": mounts,
        "securityContext": container_security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if options.resources:
        container["resources"] = {key: dict(value) for key, value in options.resources.items()}

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security,
        "tolerations": [dict(toleration) for toleration in options.tolerations],
    }
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    affinity = _affinity(options)
    if affinity:
        spec["affinity"] = affinity
    if options.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = options.active_deadline_seconds
    if options.service_account_name:
        spec["serviceAccountName"] = options.service_account_name
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in options.image_pull_secrets]

    metadata: dict[str, Any] = {
        "name": build_pod_name(r2d.repo_url, r2d.ref, options.instance),
        "labels": build_pod_labels(options.build_id, options.extra_labels, options.instance),
        "annotations": {
            **options.extra_annotations,
            REPO_ANNOTATION: r2d.repo_url,
            REF_ANNOTATION: r2d.ref,
            IMAGE_ANNOTATION: r2d.image_name,
            BUILD_ID_ANNOTATION: options.build_id,
        },
    }
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def git_credential_secret_name(pod_name: str) -> str:
    """The name of the Secret holding the git credential of build pod ``pod_name``."""
    return f"{pod_name}-git-credential"


def make_git_credential_secret(pod: Mapping[str, Any], value: str) -> dict[str, Any]:
    """The Secret holding a build's ``GIT_CREDENTIAL_ENV`` value, for build pod manifest ``pod``.

    It is created before the pod (so the kubelet finds it when it starts the
    container) and owned by it afterwards (see :func:`owner_reference_patch`).
    The Secret carries the pod's labels, never its annotations (which name
    the repository).
    """
    metadata = pod["metadata"]
    secret_metadata: dict[str, Any] = {
        "name": git_credential_secret_name(metadata["name"]),
        "labels": dict(metadata.get("labels") or {}),
    }
    if metadata.get("namespace"):
        secret_metadata["namespace"] = metadata["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret_metadata,
        "type": "Opaque",
        "stringData": {GIT_CREDENTIAL_ENV: value},
    }


def owner_reference_patch(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch making ``pod`` (as the API server returned it) an object's owner.

    Kubernetes then deletes the object with the pod, whoever deletes the pod.
    """
    metadata = pod["metadata"]
    owner = {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"], "uid": metadata["uid"]}
    return {"metadata": {"ownerReferences": [owner]}}


def pick_sticky_node(repo_url: str, nodes: Iterable[str]) -> str | None:
    """The node a repository's builds prefer, by rendezvous hashing.

    Each node scores ``sha256(node, repo_url)``; the highest wins. Adding or
    removing a node moves only the repositories that scored highest on it.
    ``None`` when there are no nodes.
    """

    def score(node: str) -> bytes:
        return hashlib.sha256(f"{node}\0{repo_url}".encode()).digest()

    candidates = sorted(set(nodes))
    return max(candidates, key=score) if candidates else None
