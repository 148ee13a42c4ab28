"""The local executor with a real repo2docker and Docker engine."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from binderhub_service.errors import BuildFailed
from binderhub_service.events import BuildEvent
from binderhub_service.executors.base import BuildRequest
from binderhub_service.executors.local import LocalDockerExecutor, write_group_file

from .repos import dockerfile, failing_repo

pytestmark = pytest.mark.docker


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                if text.encode() in f.read():
                    found.append(int(cmdline.split("/")[2]))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def build_dirs(work_dir: Path) -> list[Path]:
    return list(work_dir.glob("binderhub-build-*"))


def request_for(url: str, sha: str) -> BuildRequest:
    return BuildRequest(
        build_id=uuid.uuid4().hex,
        provider="git",
        repo_url=url,
        ref=sha,
        image_name=f"binder-executor-test-{uuid.uuid4().hex[:8]}:{sha}",
        push=False,
        content_providers=("repo2docker.contentproviders.Git",),
    )


async def test_cancel_kills_the_process_group_and_cleans_up(
    git_server, base_image, r2d_config, tmp_path
):
    marker = f"sleep-{uuid.uuid4().hex[:8]}"
    url, sha = git_server.make_repo(
        "sleeper", {"Dockerfile": dockerfile(base_image, f"echo {marker} && sleep 300")}
    )
    executor = LocalDockerExecutor(
        repo2docker_config_file=r2d_config, kill_grace_period=2, work_dir=str(tmp_path)
    )
    request = request_for(url, sha)
    events: list[BuildEvent] = []

    task = asyncio.create_task(executor.run(request, events.append))
    async with asyncio.timeout(60):
        while not any(marker in e.message and "echo" not in e.message for e in events):
            await asyncio.sleep(0.1)
    assert processes_mentioning(request.image_name)
    assert build_dirs(tmp_path)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert processes_mentioning(request.image_name) == []
    assert build_dirs(tmp_path) == []


async def test_failure_reason_comes_from_repo2docker(git_server, base_image, r2d_config, tmp_path):
    url, sha = git_server.make_repo("executor-fails", failing_repo(base_image))
    executor = LocalDockerExecutor(repo2docker_config_file=r2d_config, work_dir=str(tmp_path))
    events: list[BuildEvent] = []

    with pytest.raises(BuildFailed) as error:
        await executor.run(request_for(url, sha), events.append)

    assert error.value.message == (
        "The image build stopped with exit status 1; "
        "the build log above shows the step that failed."
    )
    assert any("about to fail" in e.message for e in events)
    assert build_dirs(tmp_path) == []


async def test_health_and_versions():
    executor = LocalDockerExecutor()
    assert (await executor.health())["engine_version"]
    assert executor.builder_version()
    assert not await executor.has_image("binder-does-not-exist:abc")


async def test_recover_stops_builds_an_earlier_run_left(tmp_path):
    """A killed service leaves repo2docker running; the next start stops it."""
    leftover = tmp_path / "binderhub-build-leftover"
    leftover.mkdir()
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    write_group_file(str(leftover), sleeper.pid)
    stale = tmp_path / "binderhub-build-stale"
    stale.mkdir()
    (stale / "process-group").write_text(f"{os.getpid()} 0\n")

    executor = LocalDockerExecutor(work_dir=str(tmp_path), kill_grace_period=5)
    # The test is the sleeper's parent, so it reaps it (init would, for a real orphan).
    _, status = await asyncio.gather(executor.recover(), asyncio.to_thread(sleeper.wait, 10))

    assert status == -signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
