"""The build step's container: repo2docker with the checkout and the engine, nothing else.

:func:`docker_run_args` gives the whole ``docker run`` command line of one build
container, with no I/O: the checkout mounted read-only, the engine's socket, no
network (the container talks to the engine through the socket only), no
capabilities, no privilege gain, a read-only root file system with a tmpfs for
``/tmp``, and an environment built from scratch. Nothing of the service's
environment, files or registry credentials is in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Where the build container sees what the service gives it.
REPO_DIR = "/srv/repo"
CONFIG_DIR = "/etc/binderhub-build"
CONFIG_FILE = f"{CONFIG_DIR}/repo2docker_config.py"
# Not below CONFIG_DIR: a mount point cannot be made inside a read-only mount.
OPERATOR_CONFIG_FILE = "/etc/binderhub-operator/repo2docker_config.py"
ENGINE_SOCKET = "/var/run/docker.sock"
# Labels that let a later run of the service find the containers an earlier run left.
WORK_DIR_LABEL = "org.binderhub-service.work-dir"
BUILD_LABEL = "org.binderhub-service.build"


@dataclass(frozen=True)
class BuildContainer:
    """Everything that decides one build container's ``docker run`` command line.

    Host paths are the service's own (its work directory, the operator's
    repo2docker config, the engine's socket); ``command`` is repo2docker's
    command line inside the container.
    """

    name: str
    image: str
    build_id: str
    work_dir: str
    checkout: str
    config_dir: str
    engine_socket: str
    uid: int
    gid: int
    socket_gid: int
    command: Sequence[str]
    operator_config: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def _bind(source: str, target: str, readonly: bool = True) -> list[str]:
    if "," in source or "=" in source:
        # --mount splits on both; the service's own paths never need them.
        raise ValueError(f"Paths mounted into build containers may not hold ',' or '=': {source}")
    mount = f"type=bind,source={source},target={target}"
    return ["--mount", mount + ",readonly" if readonly else mount]


def container_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The build container's whole environment (the image adds its own ``PATH``)."""
    env = {"HOME": "/tmp", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def docker_run_args(spec: BuildContainer) -> list[str]:
    """``docker run`` arguments (without the executable) for one build container."""
    args = [
        "run",
        "--rm",
        "--name",
        spec.name,
        "--label",
        f"{WORK_DIR_LABEL}={spec.work_dir}",
        "--label",
        f"{BUILD_LABEL}={spec.build_id}",
        "--pull",
        "never",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev",
        "--user",
        f"{spec.uid}:{spec.gid}",
    ]
    if spec.socket_gid != spec.gid:
        args += ["--group-add", str(spec.socket_gid)]
    args += _bind(spec.checkout, REPO_DIR)
    args += _bind(spec.config_dir, CONFIG_DIR)
    if spec.operator_config:
        args += _bind(spec.operator_config, OPERATOR_CONFIG_FILE)
    # The socket is written to: the one mount that is not read-only.
    args += _bind(spec.engine_socket, ENGINE_SOCKET, readonly=False)
    for key, value in sorted(container_environment(spec.env).items()):
        # Always KEY=VALUE: a bare KEY would copy the service's own value.
        args += ["--env", f"{key}={value}"]
    args += ["--entrypoint", spec.command[0], spec.image, *spec.command[1:]]
    return args


def repo2docker_config(operator_config: str | None) -> str:
    """The build's repo2docker config: the operator's (at path ``operator_config``, if any),
    then the checkout as a local folder."""
    lines = ["from repo2docker.contentproviders import Local"]
    if operator_config:
        lines.append(f"load_subconfig({operator_config!r})")
    # The service fetched the repository: repo2docker only reads the folder.
    lines.append("c.Repo2Docker.content_providers = [Local]")
    return "\n".join(lines) + "\n"
