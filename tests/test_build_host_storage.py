"""The build host's disk: build cache pruning, the free-space guard, pushed images.

Pruning empties an engine's whole build cache, so those tests run against a
Docker engine of their own (a second dockerd on a socket in the test's
directory, no network), never the shared one. The free-space guard only reads,
and runs on the shared engine with a real repo2docker build.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from binderhub_service.engine_storage import BuildHostStorage, human_bytes
from binderhub_service.errors import BuildFailed, ServiceError
from binderhub_service.events import BuildEvent, Phase
from binderhub_service.executors.local import LocalDockerExecutor
from binderhub_service.failures import FailureClass

from .conftest import stop_process
from .repos import dockerfile, hello_repo
from .sse import read_events
from .test_local_executor import build_dirs, containers_labelled, request_for

pytestmark = pytest.mark.docker

BLOB_BYTES = 3_000_000


class Engine:
    """A dockerd of this test module's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = str(root / "docker.sock")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def docker(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["docker", *args], env=self.env, cwd=cwd, check=True, capture_output=True, text=True
        ).stdout

    def build(self, context: Path, tag: str) -> None:
        """Build a one-layer image whose content is new random bytes (new cache records)."""
        context.mkdir()
        (context / "blob").write_bytes(os.urandom(BLOB_BYTES))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
        self.docker("build", "-q", "-t", tag, ".", cwd=context)


@pytest.fixture(scope="module")
def own_engine(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Engine]:
    root = Path(tmp_path_factory.mktemp("engine"))
    engine = Engine(root)
    with open(root / "dockerd.log", "w") as log:
        proc = subprocess.Popen(
            [
                "dockerd",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'docker.pid'}",
                f"--host=unix://{engine.socket}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], env=engine.env, capture_output=True).returncode:
            assert proc.poll() is None, (root / "dockerd.log").read_text()
            assert time.monotonic() < deadline, "the test's own dockerd did not start"
            time.sleep(0.2)
        yield engine
    finally:
        stop_process(proc, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def storage_for(engine: Engine, **traits: object) -> BuildHostStorage:
    storage = BuildHostStorage(**traits)
    storage.engine_socket = engine.socket
    return storage


def pruned_total() -> float:
    return REGISTRY.get_sample_value("binderhub_service_build_cache_pruned_bytes_total") or 0.0


async def test_the_build_cache_stays_under_its_size_across_builds(
    own_engine: Engine, tmp_path: Path
) -> None:
    limit = 2 * BLOB_BYTES + BLOB_BYTES // 2
    storage = storage_for(own_engine, build_cache_max_bytes=limit)
    before = pruned_total()
    sizes = []
    for n in range(5):
        tag = f"bhs-storage-test-{uuid.uuid4().hex[:8]}:{n}"
        async with storage.building():
            await asyncio.to_thread(own_engine.build, tmp_path / f"ctx{n}", tag)
        # The image goes, as after a push with remove_pushed_images: its layer is cache only.
        own_engine.docker("image", "rm", tag)
        await storage.idle()
        sizes.append(await storage.cache_bytes())
    assert all(size <= limit for size in sizes), sizes
    assert sizes[-1] >= BLOB_BYTES  # pruned down to the size, not emptied
    assert pruned_total() - before >= 2 * BLOB_BYTES
    assert REGISTRY.get_sample_value("binderhub_service_build_cache_bytes") == sizes[-1]


async def test_no_prune_runs_during_a_build_and_builds_wait_for_a_prune(
    own_engine: Engine, tmp_path: Path
) -> None:
    storage = storage_for(own_engine, build_cache_max_bytes=1)
    tag = f"bhs-storage-test-{uuid.uuid4().hex[:8]}:gate"
    await asyncio.to_thread(own_engine.build, tmp_path / "ctx", tag)
    own_engine.docker("image", "rm", tag)
    cached = await storage.cache_bytes()
    assert cached >= BLOB_BYTES

    async with storage.building():
        prune = asyncio.create_task(storage.prune())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not prune.done()  # it waits for the build to end
        assert await storage.cache_bytes() == cached
    assert await prune >= BLOB_BYTES
    assert await storage.cache_bytes() < cached

    # The build's end started a prune of its own: let it end first, or its end
    # would clear the prune marked below.
    await storage.idle()

    # A prune in progress holds a new build back until it ends.
    storage._pruning = True
    entered = asyncio.Event()

    async def build() -> None:
        async with storage.building():
            entered.set()

    waiting = asyncio.create_task(build())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not entered.is_set()
    async with storage._changed:
        storage._pruning = False
        storage._changed.notify_all()
    await waiting
    assert entered.is_set()
    await storage.idle()


def test_sizes_read_as_people_write_them() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 1024**3 // 2) == "1.5 GiB"


def executor_for(r2d_config: str, build_image: str, work_dir: Path, **storage: object):
    executor = LocalDockerExecutor(
        repo2docker_config_file=r2d_config, build_image=build_image, work_dir=str(work_dir)
    )
    for name, value in storage.items():
        setattr(executor.storage, name, value)
    return executor


def free_root() -> str:
    return subprocess.run(
        ["docker", "info", "--format", "{{.DockerRootDir}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def free_bytes() -> int:
    stat = os.statvfs(free_root())
    return stat.f_bavail * stat.f_frsize


async def test_a_build_fails_fast_when_free_space_is_below_the_threshold(
    git_server, base_image, r2d_config, build_image, tmp_path
):
    url, sha = git_server.make_repo("low-disk-fail", hello_repo(base_image, "never"))
    threshold = free_bytes() + 1024**4
    executor = executor_for(
        r2d_config, build_image, tmp_path, min_free_bytes=threshold, low_disk_action="fail"
    )
    request = request_for(url, sha)
    events: list[BuildEvent] = []
    with pytest.raises(BuildFailed) as error:
        await executor.run(request, events.append)
    assert error.value.message.startswith("Not built: the build host has ")
    assert f"less than the {human_bytes(threshold)} a build needs to start" in error.value.message
    assert events == []  # nothing was fetched or built
    assert error.value.failure_class is FailureClass.DISK_FULL
    assert containers_labelled(request.build_id) == []
    assert build_dirs(tmp_path) == []
    assert REGISTRY.get_sample_value("binderhub_service_engine_free_bytes")


async def test_a_build_waits_for_free_space_then_runs(
    git_server, base_image, r2d_config, build_image, tmp_path
):
    url, sha = git_server.make_repo("low-disk-wait", hello_repo(base_image, "later"))
    executor = executor_for(
        r2d_config,
        build_image,
        tmp_path,
        min_free_bytes=free_bytes() + 1024**4,
        free_space_check_seconds=0.05,
    )
    request = request_for(url, sha)
    events: list[BuildEvent] = []
    task = asyncio.create_task(executor.run(request, events.append))
    try:
        async with asyncio.timeout(60):
            while not events:
                await asyncio.sleep(0.05)
        assert events[0].phase == Phase.WAITING
        assert events[0].message.startswith("Waiting for disk space: the build host has ")
        assert not task.done()
        # Space comes back (here: the threshold goes down); the build starts and ends.
        executor.storage.min_free_bytes = 1
        await asyncio.wait_for(task, 300)
    finally:
        task.cancel()
        subprocess.run(["docker", "image", "rm", request.image_name], capture_output=True)
    assert [e for e in events if e.phase == Phase.WAITING] == events[:1]
    assert any(e.phase == Phase.BUILDING for e in events)


async def test_a_pushed_image_leaves_the_engine_when_so_configured(
    git_server, base_image, r2d_config, build_image, registry, tmp_path
):
    url, sha = git_server.make_repo("pushed-and-gone", hello_repo(base_image, "gone"))
    executor = executor_for(r2d_config, build_image, tmp_path, remove_pushed_images=True)
    name = f"bhs-storage-test-{uuid.uuid4().hex[:8]}"
    request = replace(request_for(url, sha), image_name=f"{registry.host}/{name}:{sha}", push=True)
    await executor.run(request, lambda event: None)
    assert registry.tags(name) == [sha]
    assert not await executor.has_image(request.image_name)


async def test_without_a_registry_local_images_are_kept_within_a_budget(
    own_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"bhs-trim-{uuid.uuid4().hex[:8]}-"
    names = {slug: f"{prefix}{slug}:1" for slug in ("old", "saved", "recent", "middle")}
    other = f"other-{uuid.uuid4().hex[:8]}:1"
    for slug, name in [*names.items(), ("other", other)]:
        await asyncio.to_thread(own_engine.build, tmp_path / slug, name)
    forgotten: list[str] = []

    async def usage() -> tuple[set[str], dict[str, float]]:
        # Uses after the images were made: an image counts as used when it was
        # made, so uses before that would leave the order to the build times.
        now = time.time()
        return {names["saved"]}, {
            names["saved"]: now + 50,
            names["old"]: now + 100,
            names["middle"]: now + 200,
            names["recent"]: now + 300,
        }

    storage = storage_for(own_engine, local_images_max_bytes=2 * BLOB_BYTES + BLOB_BYTES // 2)
    storage.image_prefix, storage.usage, storage.forget = prefix, usage, forgotten.append
    storage.docker = LocalDockerExecutor(engine_socket=own_engine.socket).storage.docker
    monkeypatch.setenv("DOCKER_HOST", own_engine.env["DOCKER_HOST"])
    async with storage.building():
        pass
    await storage.idle()
    assert forgotten == [names["old"], names["middle"]]
    left = own_engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(left) == sorted([names["saved"], names["recent"], other])


async def test_the_service_does_not_start_when_it_cannot_read_the_free_space(build_image, tmp_path):
    executor = LocalDockerExecutor(build_image=build_image, work_dir=str(tmp_path))
    executor.storage.min_free_bytes = 1
    executor.storage.data_root = str(tmp_path / "not-there")
    with pytest.raises(ServiceError) as error:
        await executor.prepare()
    assert error.value.message == (
        f"Cannot read the free space of the engine's data root {tmp_path / 'not-there'} "
        "(No such file or directory): set c.BuildHostStorage.data_root to where this "
        "service sees the engine's disk, or c.BuildHostStorage.min_free_bytes = 0."
    )
    executor.storage.data_root = ""
    await executor.prepare()  # the engine's own data root, which this host sees
    assert executor.storage.data_root == free_root()


async def test_through_the_service_a_low_disk_fails_the_stream_with_the_reason(
    service_factory, git_server, base_image
):
    url, sha = git_server.make_repo("low-disk-service", hello_repo(base_image, "never"))
    service = service_factory(
        f"c.BuildHostStorage.min_free_bytes = {free_bytes() + 1024**4}",
        "c.BuildHostStorage.low_disk_action = 'fail'",
    )
    stream = await read_events(service.git_build_url(url, sha), timeout=120)
    assert stream.phases[-1] == "failed"
    assert "Not built: the build host has " in stream.messages[-1]
    assert "a build needs to start. Try again later." in stream.messages[-1]
    assert stream.events[-1]["failure_class"] == "disk_full"
    assert not any(phase in stream.phases for phase in ("fetching", "building"))


@pytest.fixture(scope="module")
def loaded_engine(own_engine: Engine, build_image: str, base_image: str) -> Engine:
    """The module's own engine with the build image and the base image in it."""
    with subprocess.Popen(
        ["docker", "save", build_image, base_image], stdout=subprocess.PIPE
    ) as saved:
        subprocess.run(["docker", "load", "-q"], stdin=saved.stdout, env=own_engine.env, check=True)
    assert saved.returncode == 0
    return own_engine


async def test_the_executor_keeps_the_cache_under_its_size_across_builds(
    loaded_engine, git_server, base_image, r2d_config, build_image, registry, tmp_path, monkeypatch
):
    """Real repo2docker builds on the module's own engine, pushed, their images then
    removed (their layers become cache): after each, the cache is pruned to its size."""
    monkeypatch.setenv("DOCKER_HOST", loaded_engine.env["DOCKER_HOST"])
    limit = 4 * 10**6
    executor = executor_for(
        r2d_config, build_image, tmp_path, build_cache_max_bytes=limit, remove_pushed_images=True
    )
    executor.engine_socket = loaded_engine.socket
    before = pruned_total()
    sizes = []
    for n in range(3):
        line = f"head -c {BLOB_BYTES} /dev/urandom > /blob-{uuid.uuid4().hex}"
        url, sha = git_server.make_repo(f"cache-{n}", {"Dockerfile": dockerfile(base_image, line)})
        name = f"bhs-storage-test-{uuid.uuid4().hex[:8]}"
        request = replace(
            request_for(url, sha), image_name=f"{registry.host}/{name}:{sha}", push=True
        )
        await executor.run(request, lambda event: None)
        await executor.storage.idle()
        assert registry.tags(name) == [sha]
        sizes.append(await executor.storage.cache_bytes())
    assert all(size <= limit for size in sizes), sizes
    assert pruned_total() - before >= 2 * BLOB_BYTES
