"""Build step limits with a real repo2docker, Docker engine and cgroups.

The local executor's step limiter writes the limits into the cgroups the engine's
BuildKit creates for ``RUN`` steps; these builds show that a step over the memory
limit is stopped and reported as out of memory, naming the limit, and that the
limits are what the step's own cgroup says. While a test runs, the limits apply
to every build step of the engine.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

import pytest

from binderhub_service.events import BuildEvent
from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.local import LocalDockerExecutor
from binderhub_service.step_limits import BuildOutOfMemory

from .conftest import stop_process
from .repos import memory_hungry_repo
from .sse import read_events

pytestmark = pytest.mark.docker

LIMIT = "96M"
MEMORY_FILE = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
CPU_FILE = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"


def request_for(url: str, sha: str) -> BuildRequest:
    return BuildRequest(
        build_id=uuid.uuid4().hex,
        provider="git",
        repo_url=url,
        ref=sha,
        image_name=f"binder-limits-test-{uuid.uuid4().hex[:8]}:{sha}",
        push=False,
        content_providers=("repo2docker.contentproviders.Git",),
    )


@pytest.fixture
async def make_executor(r2d_config, build_image, tmp_path):
    started: list[LocalDockerExecutor] = []

    async def make(**limits: object) -> LocalDockerExecutor:
        executor = LocalDockerExecutor(
            repo2docker_config_file=r2d_config,
            build_image=build_image,
            work_dir=str(tmp_path / "work"),
            log=logging.getLogger("test-build-limits"),
            **limits,
        )
        await executor.prepare()
        started.append(executor)
        return executor

    yield make
    for executor in started:
        await executor.shutdown()


async def test_a_step_over_the_memory_limit_fails_as_out_of_memory(
    git_server, base_image, make_executor
):
    url, sha = git_server.make_repo("over-limit", memory_hungry_repo(base_image, 200))
    executor = await make_executor(build_memory_limit=LIMIT)
    events: list[BuildEvent] = []
    with pytest.raises(BuildOutOfMemory) as error:
        await executor.run(request_for(url, sha), events.append)

    assert error.value.limit == 96 * 2**20
    assert "ran out of memory" in error.value.message
    assert "96 MiB" in error.value.message
    assert any("exit code: 137" in e.message for e in events)
    assert not any("held-200MB" in e.message for e in events)


async def test_a_step_under_the_limits_runs_with_them(git_server, base_image, make_executor):
    repo = memory_hungry_repo(base_image, 20, MEMORY_FILE, CPU_FILE)
    url, sha = git_server.make_repo("under-limit", repo)
    executor = await make_executor(build_memory_limit=LIMIT, build_cpu_limit=0.5)
    events: list[BuildEvent] = []
    await executor.run(request_for(url, sha), events.append)

    assert (await executor.health())["build_step_limits"] == "memory 96 MiB, 0.5 CPU"
    log = "".join(e.message for e in events)
    assert f"{MEMORY_FILE}={96 * 2**20}" in log
    assert f"{CPU_FILE}=50000" in log
    assert "held-20MB" in log


async def test_without_limits_the_same_step_succeeds(git_server, base_image, make_executor):
    url, sha = git_server.make_repo("no-limit", memory_hungry_repo(base_image, 200, CPU_FILE))
    executor = await make_executor()
    events: list[BuildEvent] = []
    await executor.run(request_for(url, sha), events.append)

    log = "".join(e.message for e in events)
    assert "held-200MB" in log
    assert f"{CPU_FILE}=-1" in log
    assert (await executor.health())["build_step_limits"] == "none"


async def test_limits_that_cannot_be_enforced_are_a_warning_at_start(
    make_executor, tmp_path, caplog
):
    # A folder that is not a cgroup hierarchy stands for a host the service cannot limit.
    caplog.set_level(logging.WARNING)
    executor = await make_executor(build_memory_limit=LIMIT, cgroup_root=str(tmp_path / "none"))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("memory 96 MiB" in w and "cannot be enforced" in w for w in warnings)
    assert (await executor.health())["build_step_limits"] == "not enforced"


async def test_the_service_says_a_build_ran_out_of_memory(
    service_factory, registry, git_server, base_image
):
    url, _ = git_server.make_repo("service-over-limit", memory_hungry_repo(base_image, 200))
    service = service_factory(
        f"c.LocalDockerExecutor.build_memory_limit = {LIMIT!r}", registry=registry
    )

    stream = await read_events(service.git_build_url(url, "main"), timeout=120)
    service.stop()

    assert stream.phases[-1] == "failed"
    assert "ran out of memory" in stream.messages[-1]
    assert "96 MiB" in stream.messages[-1]
    assert "Each build step is limited to memory 96 MiB" in service.log()


def test_the_limiter_command_reaches_the_engine_through_its_process(base_image, tmp_path):
    """The build daemon's sidecar command, run beside this engine: ``--process dockerd``
    reaches the engine's cgroups through ``/proc/PID/root``, and a plain buildx build's
    step over the limit is killed."""
    limiter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "binderhub_service.step_limits",
            "--process=dockerd",
            f"--memory={LIMIT}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert limiter.stderr is not None
        started = limiter.stderr.readline()
        assert "Limiting build steps below /proc/" in started
        assert "memory 96 MiB" in started
        (tmp_path / "Dockerfile").write_text(memory_hungry_repo(base_image, 200)["Dockerfile"])
        build = subprocess.run(
            ["docker", "buildx", "build", "--progress=plain", "--network=none", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop_process(limiter)
        if limiter.stderr is not None:
            limiter.stderr.close()
    assert build.returncode != 0
    assert "exit code: 137" in build.stderr
    assert limiter.returncode == 0
