"""The rootless Docker engine started by ``.ci/start-rootless-engine``, for tests.

The engine runs as an unprivileged user inside a user namespace; the service
that uses it runs as that user too. Helpers here find the engine, copy images
into it from the system engine (nothing can be pulled), and list the host's
processes with their host user ids.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOTLESS_USER = os.environ.get("BHS_ROOTLESS_USER", "binderhub-rootless")
FORWARD = Path(__file__).resolve().parents[1] / "scripts" / "rootless-loopback-forward"


@dataclass(frozen=True)
class RootlessEngine:
    """Where the rootless engine listens, and whose it is."""

    user: str
    uid: int
    gid: int
    home: str

    @property
    def socket(self) -> str:
        return f"/run/user/{self.uid}/docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        return subprocess.run(["docker", *args], env=env, **kwargs)

    def dockerd_pid(self) -> int:
        return int(
            subprocess.run(
                ["pgrep", "-u", str(self.uid), "-x", "dockerd"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
        )

    def user_namespace(self) -> str:
        """The user namespace the engine (and every container of it) runs in."""
        return os.readlink(f"/proc/{self.dockerd_pid()}/ns/user")

    def forward(self, port: int) -> subprocess.Popen:
        """Let the engine reach the host's 127.0.0.1:``port``: a relay, stopped by the caller."""
        proc = subprocess.Popen(
            [str(FORWARD), str(self.dockerd_pid()), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            proc.stdout.close()
            raise RuntimeError(f"the engine cannot reach port {port}: {proc.wait()}")
        return proc


def find_engine() -> RootlessEngine:
    """The rootless engine's user, or an error saying how to start it."""
    try:
        entry = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        raise RuntimeError(
            f"No user {ROOTLESS_USER}: run .ci/start-rootless-engine first."
        ) from None
    engine = RootlessEngine(ROOTLESS_USER, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    info = engine.docker(
        "info", "--format", "{{json .SecurityOptions}}", capture_output=True, text=True
    )
    if info.returncode != 0:
        raise RuntimeError(
            f"No engine answers at {engine.docker_host}: run .ci/start-rootless-engine first."
        )
    if "name=rootless" not in info.stdout:
        raise RuntimeError(f"The engine at {engine.docker_host} is not rootless: {info.stdout}")
    return engine


def image_id(engine: RootlessEngine | None, image: str) -> str | None:
    """An image's id in the rootless engine (or the system engine for None)."""
    args = ("image", "inspect", "--format", "{{.Id}}", image)
    if engine is None:
        result = subprocess.run(["docker", *args], capture_output=True, text=True)
    else:
        result = engine.docker(*args, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def copy_image(engine: RootlessEngine, image: str) -> None:
    """Give the rootless engine the system engine's ``image`` (same id), unless it has it."""
    wanted = image_id(None, image)
    if wanted is None:
        raise RuntimeError(f"The system engine has no image {image}.")
    if image_id(engine, image) == wanted:
        return
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    engine.docker("load", stdin=save.stdout, check=True, capture_output=True)
    assert save.stdout is not None
    save.stdout.close()
    assert save.wait() == 0
    # The image the tag named before, if any, is left without a name: remove it.
    engine.docker("image", "prune", "--force", capture_output=True, check=True)


@dataclass(frozen=True)
class HostProcess:
    """A process as the host sees it."""

    pid: int
    ppid: int
    uids: tuple[int, ...]  # real, effective, saved, file system
    user_namespace: str
    command: str


def host_processes() -> list[HostProcess]:
    """Every process of the host with its host user ids, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            namespace = os.readlink(entry / "ns" / "user")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        found.append(
            HostProcess(
                pid=int(entry.name),
                ppid=int(fields["PPid"]),
                uids=tuple(int(u) for u in fields["Uid"].split()),
                user_namespace=namespace,
                command=command,
            )
        )
    return found


def descendants(processes: list[HostProcess], root: int) -> list[HostProcess]:
    """``root`` and every process below it."""
    children: dict[int, list[HostProcess]] = {}
    for p in processes:
        children.setdefault(p.ppid, []).append(p)
    found = [p for p in processes if p.pid == root]
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child.pid)
    return found


# Fixtures (tests/conftest.py makes them everyone's).
@pytest.fixture(scope="session")
def rootless_engine(base_image: str, build_image: str) -> RootlessEngine:
    """The rootless engine, holding the base and build images of the system engine."""
    engine = find_engine()
    copy_image(engine, base_image)
    copy_image(engine, build_image)
    return engine


@pytest.fixture(scope="session")
def engine_registry(rootless_engine: RootlessEngine, registry: Any) -> Iterator[Any]:
    """The ``registry`` fixture's registry, reached by the rootless engine on its own
    loopback (relayed to the host's)."""
    forwarder = rootless_engine.forward(int(registry.host.rsplit(":", 1)[1]))
    yield registry
    forwarder.terminate()
    forwarder.wait(10)
    assert forwarder.stdout is not None
    forwarder.stdout.close()
