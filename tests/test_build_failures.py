"""Builds that fail, each in its own way, for real: the service as a subprocess, the Docker
engine, repo2docker, registries and git servers on loopback.

Each test checks the failure's class in the ``failed`` event (with its hint), in the
build's record (and the REST filter), and in the metrics, and that no event names a
path of the service or one of its command lines.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from binderhub_service.failures import FailureClass, hint

from .conftest import (
    BUILD_IMAGE,
    LOOPBACK_NETWORKS,
    GitServer,
    ServiceProcess,
    free_port,
    launch_service,
    start_registry,
    stop_process,
    wait_for_http,
)
from .repos import dockerfile, failing_repo, hello_repo
from .sse import EventStream, read_events

pytestmark = pytest.mark.docker

# What the service's own command lines hold; none of it may reach an event.
COMMAND_LINE_PARTS = (
    "--no-run",
    "--json-logs",
    "--user-id",
    "docker run",
    "docker push",
    "buildx build",
    "--entrypoint",
    "binderhub-build-",
    "Traceback",
)
# A path of the machine's file system, in a failed event's message or hint.
SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|var|srv|etc|home|root|usr|opt|proc)\b")


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    response = await AsyncHTTPClient().fetch(
        url,
        method=method,
        body=None if body is None else json.dumps(body),
        allow_nonstandard_methods=True,
        raise_error=False,
        request_timeout=120,
    )
    return response.code, json.loads(response.body or b"null")


async def metrics(service: ServiceProcess) -> str:
    response = await AsyncHTTPClient().fetch(service.url + "metrics")
    return response.body.decode()


def config_lines(tmp: Path, r2d_config: str, *extra: str) -> list[str]:
    return [
        "c.BinderHubService.ip = '127.0.0.1'",
        f"c.BinderHubService.data_dir = {str(tmp / 'data')!r}",
        f"c.LocalDockerExecutor.repo2docker_config_file = {r2d_config!r}",
        f"c.LocalDockerExecutor.build_image = {BUILD_IMAGE!r}",
        "c.BinderHubService.auth_enabled = False",
        "c.BuildManager.transient_failure_retry_delay = 1",
        # The tests poll the API.
        "c.UserLimits.rate_limit_per_minute = 100000",
        LOOPBACK_NETWORKS,
        *extra,
    ]


def start_service(tmp: Path, lines: list[str]) -> ServiceProcess:
    port = free_port()
    config = tmp / f"config-{port}.py"
    config.write_text("\n".join([*lines, f"c.BinderHubService.port = {port}"]) + "\n")
    return launch_service(config, tmp, f"http://127.0.0.1:{port}/")


async def start_build(service: ServiceProcess, url: str, ref: str) -> dict[str, Any]:
    status, record = await call(
        "POST", service.url + "api/v1/builds", {"repo_url": url, "ref": ref}
    )
    assert status == 202, record
    return record


async def finish(service: ServiceProcess, record: dict[str, Any]) -> tuple[dict, EventStream]:
    """The build's whole event stream, once it ended, and its final record."""
    stream = await read_events(f"{service.url}api/v1/builds/{record['id']}/events", timeout=400)
    status, final = await call("GET", f"{service.url}api/v1/builds/{record['id']}")
    assert status == 200, final
    return final, stream


async def check_failure(
    service: ServiceProcess,
    record: dict[str, Any],
    stream: EventStream,
    failure_class: FailureClass,
    status: str = "failure",
) -> None:
    """The class is in the failed event, the record, the REST filter and the metrics; no
    event names a path of the service or a piece of its command lines."""
    final = stream.events[-1]
    assert final["phase"] == "failed", stream.messages[-10:]
    assert final["failure_class"] == failure_class, final
    assert final["hint"] == hint(failure_class)
    assert record["state"] == "failed" and record["failure_class"] == failure_class
    code, page = await call(
        "GET", f"{service.url}api/v1/builds?failure_class={failure_class.value}"
    )
    assert code == 200 and record["id"] in [b["id"] for b in page["builds"]]
    counter = (
        f'binderhub_build_count_total{{failure_class="{failure_class}",provider="git",'
        f'status="{status}"}}'
    )
    assert counter in await metrics(service)
    data_dir = str(service.config_file.parent)
    for event in stream.events:
        text = json.dumps(event)
        assert data_dir not in text, event
        for part in COMMAND_LINE_PARTS:
            assert part not in text, (part, event)
    for text in (final["message"], final["hint"]):
        assert not SERVER_PATH.search(text), text


def retries(stream: EventStream) -> list[dict[str, Any]]:
    return [e for e in stream.events if "retry" in e]


@pytest.fixture(scope="module")
def repo_service(
    tmp_path_factory: pytest.TempPathFactory, r2d_config: str, build_image: str
) -> Iterator[ServiceProcess]:
    """One service for the builds whose repositories fail, without a registry."""
    tmp = tmp_path_factory.mktemp("failing-repos")
    service = start_service(tmp, config_lines(tmp, r2d_config))
    yield service
    service.stop()


# Each step prints what a real failure prints; the text is split in the Dockerfile so
# that only what the step printed, never the command quoted in the log, can match.
FAILING_STEPS = {
    FailureClass.BUILD_ERROR: "echo about to fail && exit 3",
    FailureClass.DEPENDENCY_CONFLICT: (
        "printf 'ERROR: Cannot install a==1 and b==2 because these package versions have "
        "conflicting dependencies.\\nERROR: Resolution%s: for help visit "
        "https://pip.pypa.io/\\n' Impossible >&2; exit 1"
    ),
    # A real ENOSPC from the kernel: /dev/full is always full.
    FailureClass.DISK_FULL: "dd if=/dev/zero of=/dev/full bs=1k count=1",
    # SIGKILL is how the kernel's out-of-memory killer ends a step: BuildKit then reports
    # "exit code: 137" (a memory limit that triggers it is configured elsewhere).
    FailureClass.OUT_OF_MEMORY: "sh -c 'echo allocating; kill -9 $$'",
}
MAMBA_STEP = (
    "printf 'LibMamba%sError: Encountered problems while solving:\\n"
    "  - nothing provides requested numpy ==99\\n' Unsatisfiable >&2; exit 1"
)


@pytest.mark.parametrize(
    ("name", "step", "failure_class"),
    [
        *((f"fails-{c}", step, c) for c, step in FAILING_STEPS.items()),
        ("fails-mamba", MAMBA_STEP, FailureClass.DEPENDENCY_CONFLICT),
    ],
)
async def test_a_repository_that_fails(
    repo_service: ServiceProcess,
    git_server: GitServer,
    base_image: str,
    name: str,
    step: str,
    failure_class: FailureClass,
) -> None:
    url, sha = git_server.make_repo(name, {"Dockerfile": dockerfile(base_image, step)})
    record, stream = await finish(repo_service, await start_build(repo_service, url, sha))
    await check_failure(repo_service, record, stream, failure_class)
    # What the repository causes is never tried again.
    assert retries(stream) == []


async def test_a_step_that_outlasts_the_build_timeout(
    tmp_path: Path, r2d_config: str, build_image: str, git_server: GitServer, base_image: str
) -> None:
    service = start_service(
        tmp_path, config_lines(tmp_path, r2d_config, "c.BuildManager.build_timeout = 15")
    )
    try:
        url, sha = git_server.make_repo(
            "fails-slowly", {"Dockerfile": dockerfile(base_image, "echo started && sleep 600")}
        )
        record, stream = await finish(service, await start_build(service, url, sha))
        await check_failure(service, record, stream, FailureClass.TIMEOUT, status="timeout")
        assert "took longer than 15 seconds" in stream.messages[-1]
    finally:
        service.stop()


@pytest.fixture
def dead_socket(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket path with no engine behind it: connecting is refused."""
    path = tmp_path / "no-engine.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    yield path


async def test_the_engine_unreachable(
    tmp_path: Path,
    r2d_config: str,
    build_image: str,
    git_server: GitServer,
    base_image: str,
    dead_socket: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The executor's engine socket answers nothing: a temporary failure, tried again once."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    service = start_service(
        tmp_path,
        config_lines(
            tmp_path, r2d_config, f"c.LocalDockerExecutor.engine_socket = {str(dead_socket)!r}"
        ),
    )
    try:
        url, sha = git_server.make_repo("no-engine", hello_repo(base_image, "never built"))
        record, stream = await finish(service, await start_build(service, url, sha))
        await check_failure(service, record, stream, FailureClass.ENGINE_UNAVAILABLE)
        assert stream.messages[-1] == "Build failed: The container engine could not be reached.\n"
        [retry] = retries(stream)
        assert retry["failure_class"] == "engine_unavailable"
        assert service.log().count("trying it again (1 of 1)") == 1
        assert str(dead_socket) not in json.dumps(stream.events)
        assert (
            'binderhub_service_build_retries_total{failure_class="engine_unavailable"} 1.0'
            in await metrics(service)
        )
    finally:
        service.stop()


async def wait_for_output(service: ServiceProcess, build_id: str, text: str) -> None:
    """Return once the build's log has a line holding ``text`` (or the build ended)."""
    url = f"{service.url}api/v1/builds/{build_id}/events"
    count = 10
    for _ in range(600):
        stream = await read_events(url, stop_after=count, timeout=60)
        if any(text in m for m in stream.messages) or len(stream.events) < count:
            return
        count = len(stream.events) + 1
    raise AssertionError(f"build {build_id} never printed {text!r}")


async def wait_for_log(service: ServiceProcess, text: str) -> None:
    for _ in range(480):
        if text in service.log():
            return
        await asyncio.sleep(0.25)
    log = "".join(line for line in service.log().splitlines(True) if "tornado.access" not in line)
    raise AssertionError(f"the service never logged {text!r}: {log[-3000:]}")


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[tuple[Path, Any, list[subprocess.Popen]]]:
    """A registry of this test's own on a free loopback port, which the test stops."""
    root = tmp_path / "registry"
    root.mkdir()
    proc, registry = start_registry(root)
    procs = [proc]
    yield root, registry, procs
    for running in procs:
        stop_process(running)


@pytest.mark.parametrize("comes_back", [False, True])
async def test_the_registry_stopped_mid_build(
    tmp_path: Path,
    r2d_config: str,
    build_image: str,
    git_server: GitServer,
    base_image: str,
    own_registry: tuple[Path, Any, list[subprocess.Popen]],
    comes_back: bool,
) -> None:
    """The registry goes away while the image builds: the push fails, the build is tried
    again once; when the registry is back by then, the second try pushes."""
    root, registry, procs = own_registry
    service = start_service(
        tmp_path,
        config_lines(
            tmp_path,
            r2d_config,
            f"c.DockerRegistry.url = {registry.url!r}",
            "c.BuildManager.transient_failure_retry_delay = 3",
        ),
    )
    try:
        name = f"registry-goes-{'and-comes' if comes_back else 'away'}"
        # A step of its own each time, so that the layer cache never skips it.
        marker = f"{name}-{uuid.uuid4().hex}"
        step = f"echo {marker} && sleep 5"
        url, sha = git_server.make_repo(name, {"Dockerfile": dockerfile(base_image, step)})
        record = await start_build(service, url, sha)
        await wait_for_output(service, record["id"], marker)
        stop_process(procs.pop())
        if comes_back:
            await wait_for_log(service, "trying it again (1 of 1)")
            procs.append(
                subprocess.Popen(
                    ["docker-registry", "serve", str(root / "config.yml")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            await asyncio.to_thread(wait_for_http, registry.url + "/v2/", 30, procs[-1])
        final, stream = await finish(service, record)
        assert len(retries(stream)) == 1, stream.events[-8:]
        [retry] = retries(stream)
        assert retry["failure_class"] == "registry_unavailable"
        assert "registry could not be reached" in retry["message"]
        if comes_back:
            assert stream.phases[-1] == "ready" and final["failure_class"] is None
            assert registry.tags(stream.events[-1]["imageName"].split("/", 1)[1].split(":")[0])
        else:
            await check_failure(service, final, stream, FailureClass.REGISTRY_UNAVAILABLE)
            assert service.log().count("trying it again") == 1
    finally:
        service.stop()


@pytest.fixture
async def silent_git_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server that accepts connections and never answers; counts them."""
    connections: list[int] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while await reader.read(4096):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"git://127.0.0.1:{port}/hangs.git", connections
    server.close()


async def test_a_clone_that_hangs_fails_at_the_fetch_timeout(
    tmp_path: Path,
    r2d_config: str,
    build_image: str,
    git_server: GitServer,
    base_image: str,
    silent_git_server: tuple[str, list[int]],
) -> None:
    """The fetch has its own, short limit: the build slot is free again long before the
    build timeout, and the build queued behind it runs."""
    hanging_url, connections = silent_git_server
    service = start_service(
        tmp_path,
        config_lines(
            tmp_path,
            r2d_config,
            "c.LocalDockerExecutor.fetch_timeout = 3",
            "c.BuildManager.max_concurrent_builds = 1",
        ),
    )
    try:
        hanging = await start_build(service, hanging_url, "1" * 40)
        url, sha = git_server.make_repo("after-the-hang", hello_repo(base_image, "next"))
        queued = await start_build(service, url, sha)
        assert queued["state"] == "queued"
        record, stream = await finish(service, hanging)
        await check_failure(service, record, stream, FailureClass.TIMEOUT)
        assert stream.messages[-1] == (
            "Build failed: Fetching the repository took longer than 3 seconds, the limit for "
            "fetching; its host may not be answering.\n"
        )
        assert connections and retries(stream) == []
        assert urllib.parse.urlsplit(hanging_url).netloc in stream.messages[1]
        after, next_stream = await finish(service, queued)
        assert after["state"] == "succeeded" and next_stream.phases[-1] == "ready"
    finally:
        service.stop()


@pytest.mark.node
async def test_binderhubs_javascript_client_reads_a_failed_build(
    repo_service: ServiceProcess, git_server: GitServer, base_image: str
) -> None:
    """@jupyterhub/binderhub-client (as jupyterhub-fancy-profiles uses it) ends at the
    failed event and hands on its extra fields."""
    url, sha = git_server.make_repo("fails-for-the-client", failing_repo(base_image))
    spec = "git/" + urllib.parse.quote(url, safe="") + "/" + sha
    result = await asyncio.to_thread(
        subprocess.run,
        ["node", "build.mjs", repo_service.url + "build/", spec, ""],
        cwd=Path(__file__).parent / "js",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["phase"] == "failed"
    assert events[-1]["failure_class"] == "build_error"
    assert events[-1]["hint"] == hint(FailureClass.BUILD_ERROR)
