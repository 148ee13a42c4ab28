"""The local executor with a real repo2docker and Docker engine."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from binderhub_service.errors import BuildFailed, ServiceError, UpstreamError
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


def containers_labelled(build_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.binderhub-service.build={build_id}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


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


async def test_cancel_removes_the_container_and_the_directory(
    git_server, base_image, r2d_config, build_image, tmp_path
):
    marker = f"sleep-{uuid.uuid4().hex[:8]}"
    url, sha = git_server.make_repo(
        "sleeper", {"Dockerfile": dockerfile(base_image, f"echo {marker} && sleep 300")}
    )
    executor = LocalDockerExecutor(
        repo2docker_config_file=r2d_config,
        build_image=build_image,
        kill_grace_period=2,
        work_dir=str(tmp_path),
    )
    request = request_for(url, sha)
    events: list[BuildEvent] = []

    task = asyncio.create_task(executor.run(request, events.append))
    async with asyncio.timeout(60):
        while not any(marker in e.message and "echo" not in e.message for e in events):
            await asyncio.sleep(0.1)
    assert processes_mentioning(request.image_name)
    assert containers_labelled(request.build_id)
    assert build_dirs(tmp_path)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert processes_mentioning(request.image_name) == []
    assert containers_labelled(request.build_id) == []
    assert build_dirs(tmp_path) == []


async def test_failure_reason_is_a_fixed_text(
    git_server, base_image, r2d_config, build_image, tmp_path
):
    url, sha = git_server.make_repo("executor-fails", failing_repo(base_image))
    executor = LocalDockerExecutor(
        repo2docker_config_file=r2d_config, build_image=build_image, work_dir=str(tmp_path)
    )
    events: list[BuildEvent] = []

    with pytest.raises(BuildFailed) as error:
        await executor.run(request_for(url, sha), events.append)

    assert error.value.message == (
        "The image build stopped with exit status 1; "
        "the build log above shows the step that failed."
    )
    assert any("about to fail" in e.message for e in events)
    assert build_dirs(tmp_path) == []


async def test_health_and_versions(build_image):
    executor = LocalDockerExecutor(build_image=build_image)
    await executor.prepare()
    assert (await executor.health())["engine_version"]
    assert executor.builder_version()
    assert not await executor.has_image("binder-does-not-exist:abc")


async def test_an_engine_that_does_not_answer_does_not_stop_the_start(tmp_path):
    executor = LocalDockerExecutor(docker_executable="false")
    await executor.prepare()
    with pytest.raises(UpstreamError):
        await executor.health()


async def test_a_missing_build_image_stops_the_start_and_fails_health(docker_engine):
    executor = LocalDockerExecutor(build_image="binderhub-service-missing:nothing")
    with pytest.raises(ServiceError) as error:
        await executor.prepare()
    assert "binderhub-service-missing:nothing is not in the container engine" in error.value.message
    with pytest.raises(UpstreamError):
        await executor.health()


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


async def test_recover_removes_build_containers_of_its_own_work_dir_only(base_image, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    containers = {}
    for work_dir in (mine, other):
        containers[work_dir] = subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--rm",
                "--network",
                "none",
                "--label",
                f"org.binderhub-service.work-dir={work_dir}",
                base_image,
                "sleep",
                "300",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    try:
        await LocalDockerExecutor(work_dir=str(mine)).recover()
        running = subprocess.run(
            ["docker", "ps", "-q", "--no-trunc"], check=True, capture_output=True, text=True
        ).stdout.split()
        assert containers[mine] not in running
        assert containers[other] in running
    finally:
        subprocess.run(["docker", "rm", "-f", *containers.values()], capture_output=True)


async def test_the_work_dir_is_the_services_own(tmp_path):
    """Never the system's temporary folder: anyone can plant entries there."""
    planted = Path(tempfile.mkdtemp(prefix="binderhub-build-"))
    (planted / "process-group").write_text(f"{os.getpid()} 0\n")
    try:
        with pytest.raises(ServiceError):
            await LocalDockerExecutor().recover()
        work_dir = tmp_path / "builds"
        await LocalDockerExecutor(work_dir=str(work_dir)).recover()
        assert planted.exists()
        assert work_dir.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(planted)


async def test_the_engine_clis_own_errors_are_logged_not_relayed(
    git_server, base_image, r2d_config, tmp_path
):
    """They name the service's paths; users get a fixed text."""
    url, sha = git_server.make_repo("executor-no-image", failing_repo(base_image))
    executor = LocalDockerExecutor(
        repo2docker_config_file=r2d_config,
        build_image="binderhub-service-missing:nothing",
        work_dir=str(tmp_path),
    )
    events: list[BuildEvent] = []
    with pytest.raises(BuildFailed) as error:
        await executor.run(request_for(url, sha), events.append)
    assert error.value.message == "The build stopped with exit code 125."
    assert all(str(tmp_path) not in e.message for e in events)
    assert all("binderhub-service-missing" not in e.message for e in events)
