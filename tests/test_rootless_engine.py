"""End to end on a rootless Docker engine: no process of a build runs as root.

The engine is started by ``.ci/start-rootless-engine`` as an unprivileged user
inside a user namespace, in a network namespace of its own with loopback only;
the test registry's port on 127.0.0.1 is relayed into it, so nothing leaves
loopback. The service runs
as that user too, as the recommended setup has it. Everything is real: the
engine, the registry, the git daemon, repo2docker in its build container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from binderhub_service.naming import split_image_name

from .conftest import (
    BUILD_IMAGE,
    LOOPBACK_NETWORKS,
    free_port,
    stop_process,
    wait_for_http,
)
from .repos import hello_repo
from .rootless import HostProcess, RootlessEngine, descendants
from .rootless import host_processes as list_processes
from .sse import read_events

pytestmark = pytest.mark.docker

# The engine's user cannot run this interpreter when it lives in root's home (a
# virtualenv made with it links there), so the service runs on the system's
# Python 3 (the same minor version) with this environment's packages and nothing else.
SYSTEM_PYTHON = "/usr/bin/python3"
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))
PACKAGE_DIR = Path(__file__).parents[1] / "binderhub_service"
LAUNCH = (
    "import site, sys; site.addsitedir(sys.argv.pop(1)); "
    "from binderhub_service.app import main; main()"
)

R2D_CONFIG = """\
from repo2docker.contentproviders import Git
c.DockerEngine.extra_buildx_build_args = ["--network=none"]
c.Repo2Docker.content_providers = [Git]
"""


def importable_as(uid: int, gid: int, site_packages: str) -> bool:
    """Whether the user ``uid`` can import the service from ``site_packages``."""
    check = "import site, sys; site.addsitedir(sys.argv[1]); import binderhub_service.app"
    result = subprocess.run(
        [SYSTEM_PYTHON, "-S", "-c", check, site_packages],
        user=uid,
        group=gid,
        extra_groups=[],
        env={"PATH": os.environ["PATH"]},
        cwd="/",
        capture_output=True,
    )
    return result.returncode == 0


@pytest.fixture(scope="module")
def engine_site_packages(rootless_engine: RootlessEngine) -> Iterator[str]:
    """This environment's packages, where the engine's user can read them: in place
    when it can, else a copy (hard links where the disk allows) under /var/tmp, as
    when the checkout lives in a home directory closed to other users."""
    engine = rootless_engine
    if importable_as(engine.uid, engine.gid, SITE_PACKAGES):
        yield SITE_PACKAGES
        return
    root = Path(tempfile.mkdtemp(prefix="bhs-rootless-site-", dir="/var/tmp"))
    root.chmod(0o755)
    site = root / "site-packages"
    linked = subprocess.run(["cp", "-al", SITE_PACKAGES, str(site)], capture_output=True)
    if linked.returncode != 0:
        shutil.rmtree(site, ignore_errors=True)
        shutil.copytree(SITE_PACKAGES, site, symlinks=True)
    # The editable install points at the checkout: point it at a copy of the package.
    for pth in site.glob("_editable_impl_binderhub_service*.pth"):
        pth.unlink()
    shutil.copytree(PACKAGE_DIR, root / "src" / "binderhub_service")
    (site / "binderhub_service_src.pth").write_text(f"{root / 'src'}\n")
    assert importable_as(engine.uid, engine.gid, str(site)), "the copy is not importable"
    yield str(site)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine_user_dir(rootless_engine: RootlessEngine) -> Iterator[Path]:
    """A directory the engine's user owns, for the service's config and data."""
    path = Path(tempfile.mkdtemp(prefix="bhs-rootless-", dir="/var/tmp"))
    os.chown(path, rootless_engine.uid, rootless_engine.gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(directory: Path, engine: RootlessEngine, port: int, registry_url: str) -> Path:
    r2d = directory / "repo2docker_config.py"
    r2d.write_text(R2D_CONFIG)
    config = directory / "config.py"
    config.write_text(
        "\n".join(
            [
                "c.BinderHubService.ip = '127.0.0.1'",
                f"c.BinderHubService.port = {port}",
                "c.BinderHubService.auth_enabled = False",
                f"c.BinderHubService.data_dir = {str(directory / 'data')!r}",
                f"c.DockerRegistry.url = {registry_url!r}",
                f"c.LocalDockerExecutor.repo2docker_config_file = {str(r2d)!r}",
                f"c.LocalDockerExecutor.build_image = {BUILD_IMAGE!r}",
                LOOPBACK_NETWORKS,
            ]
        )
        + "\n"
    )
    for path in (r2d, config):
        os.chown(path, engine.uid, engine.gid)
    return config


def start_service(
    config: Path, engine: RootlessEngine, site_packages: str, as_engine_user: bool = True
) -> subprocess.Popen:
    """``binderhub-service`` with ``DOCKER_HOST`` the rootless engine's (and nothing else of it)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": engine.home,
        "DOCKER_HOST": engine.docker_host,
        "LANG": "C.UTF-8",
    }
    user = {"user": engine.uid, "group": engine.gid, "extra_groups": []} if as_engine_user else {}
    with open(config.with_suffix(".log"), "w") as log:
        return subprocess.Popen(
            [SYSTEM_PYTHON, "-S", "-c", LAUNCH, site_packages, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=config.parent,
            env=env,
            start_new_session=True,
            **user,
        )


class ProcessWatch:
    """Samples the host's processes while a build runs: the service's process tree
    (fetch, the docker CLI, push) and everything in the engine's user namespace
    (the engine, its shims, build containers, BuildKit's build steps)."""

    def __init__(self, service_pid: int, engine_namespace: str) -> None:
        self.service_pid = service_pid
        self.engine_namespace = engine_namespace
        self.seen: dict[tuple[int, str], HostProcess] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            processes = list_processes()
            watched = descendants(processes, self.service_pid) + [
                p for p in processes if p.user_namespace == self.engine_namespace
            ]
            for p in watched:
                self.seen[(p.pid, p.command)] = p
            time.sleep(0.05)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_rootless_engine_builds_pushes_and_finds_without_root(
    rootless_engine, engine_site_packages, engine_user_dir, engine_registry, git_server, base_image
):
    engine, registry = rootless_engine, engine_registry
    url, sha = git_server.make_repo("rootless-hello", hello_repo(base_image, "hello, rootless"))
    port = free_port()
    config = write_config(engine_user_dir, engine, port, registry.url)
    service = start_service(config, engine, engine_site_packages)
    base = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_for_http(base + "versions", proc=service)
        except RuntimeError:
            pytest.fail(f"the service did not start: {config.with_suffix('.log').read_text()}")
        with urllib.request.urlopen(base + "health") as response:
            health = json.load(response)
        executor = next(c for c in health["checks"] if c["service"] == "executor")
        assert executor["rootless"] is True
        assert health["ok"] is True

        quoted = urllib.request.quote(url, safe="")
        with ProcessWatch(service.pid, engine.user_namespace()) as watch:
            stream = await read_events(f"{base}build/git/{quoted}/main?build_only=true")
        log = config.with_suffix(".log")
        assert stream.phases[-2:] == ["built", "ready"], log.read_text()[-3000:]
        image = stream.events[-1]["imageName"]
        assert image.endswith(":" + sha)

        again = await read_events(f"{base}build/git/{quoted}/{sha}?build_only=true")
        assert again.events == [
            {"phase": "ready", "message": "Done! Found built image\n", "imageName": image}
        ]
        assert log.read_text().count("running repo2docker for") == 1
    finally:
        stop_process(service)

    _, repository, tag = split_image_name(image)
    assert registry.tags(repository) == [tag]

    processes = list(watch.seen.values())
    commands = [p.command for p in processes]
    # The long-lived parts of the build were seen (short ones, such as the
    # fetch, may fall between two samples): the service's docker CLI, the
    # engine, and repo2docker inside its build container.
    assert any(c.startswith("docker run") for c in commands), commands
    assert any(c.startswith("dockerd") for c in commands), commands
    build_container = [
        p for p in processes if "--no-run" in p.command and "repo2docker" in p.command
    ]
    assert build_container, commands
    as_root = [p for p in processes if 0 in p.uids]
    assert as_root == []
    # The build container's root is the engine's user on the host.
    assert {p.uids[0] for p in build_container} == {engine.uid}

    engine.docker("image", "rm", "-f", image, capture_output=True, check=True)
    engine.docker("pull", image, capture_output=True, check=True)
    try:
        run = engine.docker(
            "run", "--rm", "--network=none", image, capture_output=True, text=True, check=True
        )
        assert run.stdout == "hello, rootless\n"
    finally:
        engine.docker("image", "rm", "-f", image, capture_output=True)


def test_service_of_another_user_refuses_a_rootless_engine(
    rootless_engine, engine_site_packages, tmp_path, registry
):
    """A rootless engine's build containers can read only its own user's files: a
    service of another user (root here) stops at start, naming the fix."""
    port = free_port()
    config = write_config(tmp_path, rootless_engine, port, registry.url)
    service = start_service(config, rootless_engine, engine_site_packages, as_engine_user=False)
    try:
        assert service.wait(60) == 1
    finally:
        stop_process(service)
    log = config.with_suffix(".log").read_text()
    assert f"belongs to uid {rootless_engine.uid}" in log
    assert "run the service as the engine's user" in log
