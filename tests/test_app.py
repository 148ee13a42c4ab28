"""The service in-process with a fake executor: stream semantics, queueing, limits.

No engine, registry or network: git specs use full commit shas, which resolve
without asking any host. The service is composed as in production: its store is
open (SQLite in the test's folder) and requests take the configured
authenticator's path (``HeaderAuthenticator``: the user named by ``X-Test-User``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from binderhub_service.app import BinderHubService
from binderhub_service.failures import FailureClass, hint

from .api.conftest import HeaderAuthenticator
from .fakes import FakeExecutor
from .sse import EventStream
from .sse import read_events as read_stream

SHA = "0123456789abcdef0123456789abcdef01234567"


# Every request in this module comes from this hub user.
USER = "alice"


async def read_events(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> EventStream:
    """The event stream at ``url``, asked for as :data:`USER`."""
    return await read_stream(url, headers={"X-Test-User": USER, **(headers or {})}, **kwargs)


async def fetch(url: str, **kwargs: Any) -> Any:
    """``url`` fetched as :data:`USER`."""
    headers = {"X-Test-User": USER, **kwargs.pop("headers", {})}
    return await AsyncHTTPClient().fetch(url, headers=headers, **kwargs)


class RunningApp:
    def __init__(self, app: BinderHubService, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}{app.base_url}"

    @property
    def executor(self) -> FakeExecutor:
        assert isinstance(self.app.executor, FakeExecutor)
        return self.app.executor

    def build_url(self, repo: str, ref: str = SHA, query: str = "build_only=true") -> str:
        spec = urllib.parse.quote(f"https://example.org/{repo}.git", safe="") + "/" + ref
        return f"{self.url}build/git/{spec}?{query}"


@pytest.fixture
async def start_app(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningApp]]]:
    servers: list[tuple[HTTPServer, BinderHubService]] = []

    async def start(**settings: Any) -> RunningApp:
        config = Config()
        config.BinderHubService.executor_class = FakeExecutor
        config.BinderHubService.config_file = "/nonexistent/binderhub_service_config.py"
        config.BinderHubService.auth_enabled = False
        config.BinderHubService.authenticator_class = HeaderAuthenticator
        config.BinderHubService.data_dir = str(tmp_path / f"data-{len(servers)}")
        config.BuildRecorder.flush_interval = 0.05
        for key, value in settings.items():
            cls, _, name = key.partition("__")
            config[cls][name] = value
        app = BinderHubService(config=config)
        app.initialize([])
        await app.start_store()
        sock, port = bind_unused_port()
        server = HTTPServer(app.tornado_app)
        server.add_sockets([sock])
        servers.append((server, app))
        return RunningApp(app, port)

    yield start
    for server, app in servers:
        server.stop()
        await app.build_manager.shutdown()
        await app.stop_store()


async def test_build_streams_every_event_then_ready(start_app):
    service = await start_app()
    stream = await read_events(service.build_url("repo"))
    assert stream.phases == [
        "waiting",
        "fetching",
        "building",
        "building",
        "building",
        None,
        "built",
        "ready",
    ]
    assert stream.ids == list(range(1, 9))
    assert stream.events[-1]["message"] == "Done! Image built\n"
    image = stream.events[-1]["imageName"]
    assert image.startswith("binder-example-2eorg-2frepo-") and image.endswith(":" + SHA)

    again = await read_events(service.build_url("repo"))
    assert again.events == [
        {"phase": "ready", "message": "Done! Found built image\n", "imageName": image}
    ]
    assert len(service.executor.runs) == 1


async def test_stream_builds_are_recorded_for_the_authenticated_user(start_app):
    service = await start_app()
    stream = await read_events(service.build_url("mine"))
    assert stream.phases[-1] == "ready"
    listed = json.loads((await fetch(service.url + "api/v1/builds")).body)["builds"]
    assert [(b["requester"], b["state"]) for b in listed] == [(USER, "succeeded")]
    others = await fetch(service.url + "api/v1/builds", headers={"X-Test-User": "bob"})
    assert json.loads(others.body)["builds"] == []


async def test_concurrent_requests_share_one_run(start_app):
    service = await start_app(FakeExecutor__lines=20, FakeExecutor__pause=0.01)
    streams = await asyncio.gather(*(read_events(service.build_url("same")) for _ in range(5)))
    assert len(service.executor.runs) == 1
    assert all(s.events == streams[0].events for s in streams)


async def test_queue_reports_positions(start_app):
    service = await start_app(
        BuildManager__max_concurrent_builds=1, FakeExecutor__lines=10, FakeExecutor__pause=0.02
    )
    first = asyncio.create_task(read_events(service.build_url("first")))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(read_events(service.build_url("second")))
    third = asyncio.create_task(read_events(service.build_url("third")))
    streams = await asyncio.gather(first, second, third)
    assert [s.phases[-1] for s in streams] == ["ready"] * 3
    assert streams[1].events[0]["queue_position"] == 1
    assert streams[2].events[0]["queue_position"] == 2
    # The third build moved up when the first ended.
    positions = [e.get("queue_position") for e in streams[2].events if e.get("phase") == "waiting"]
    assert positions == [2, 1]


async def test_failed_build(start_app):
    service = await start_app()
    stream = await read_events(service.build_url("will-fail"))
    assert stream.phases[-1] == "failed"
    assert stream.events[-1]["message"] == "Build failed: the Dockerfile failed\n"
    assert stream.events[-1]["failure_class"] == "build_error"
    assert stream.events[-1]["hint"] == hint(FailureClass.BUILD_ERROR)


async def test_timeout_stops_the_build(start_app):
    service = await start_app(BuildManager__build_timeout=0.2)
    stream = await read_events(service.build_url("hang"), timeout=10)
    assert stream.phases[-1] == "failed"
    assert "longer than 0.2 seconds" in stream.events[-1]["message"]
    assert stream.events[-1]["failure_class"] == "timeout"
    assert len(service.executor.cancelled) == 1


async def test_cancel_ends_every_stream(start_app):
    service = await start_app()
    task = asyncio.create_task(read_events(service.build_url("hang"), timeout=10))
    while not service.executor.runs:
        await asyncio.sleep(0.01)
    build = service.app.build_manager.get(service.executor.runs[0].build_id)
    assert build is not None and service.app.build_manager.cancel(build)
    stream = await task
    assert stream.events[-1] == {
        "phase": "failed",
        "message": "The build was cancelled.\n",
        "failure_class": "cancelled",
        "hint": hint(FailureClass.CANCELLED),
    }
    assert not service.app.build_manager.cancel(build)


async def test_unexpected_errors_show_no_internals(start_app, monkeypatch):
    service = await start_app()

    async def broken(request, emit):
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(service.executor, "run", broken)
    stream = await read_events(service.build_url("boom"))
    message = stream.events[-1]["message"]
    assert stream.phases[-1] == "failed"
    assert "internal error" in message and "/srv" not in message


async def test_a_departed_client_does_not_stop_the_build(start_app):
    service = await start_app(FakeExecutor__lines=30, FakeExecutor__pause=0.01)
    partial = await read_events(service.build_url("keep-going"), stop_after=3)
    assert len(partial.events) == 3
    rest = await read_events(
        service.build_url("keep-going"), headers={"Last-Event-ID": str(partial.ids[-1])}
    )
    assert rest.ids[0] == 4
    assert rest.phases[-1] == "ready"
    assert service.executor.cancelled == []
    assert len(service.executor.runs) == 1


async def test_keepalive_comments_on_a_quiet_stream(start_app):
    service = await start_app(
        BinderHubService__keepalive_interval=0.02, FakeExecutor__lines=3, FakeExecutor__pause=0.1
    )
    stream = await read_events(service.build_url("quiet"))
    assert "keepalive" in stream.comments
    assert stream.phases[-1] == "ready"


@pytest.mark.parametrize(
    ("query", "headers", "status", "words"),
    [
        # Without build_only it is a launch, which needs a hub user.
        ("", {}, 403, "logged-in hub user"),
        ("build_only=false", {}, 403, "logged-in hub user"),
        ("build_only=true", {"Accept": "application/json"}, 406, "text/event-stream"),
        ("build_only=true", {"Accept": "text/event-stream;q=0"}, 406, "text/event-stream"),
    ],
)
async def test_refusals_before_the_stream(start_app, query, headers, status, words):
    service = await start_app()
    stream = await read_events(service.build_url("repo", query=query), headers=headers)
    assert stream.status == 200
    assert stream.phases == ["failed"]
    assert stream.events[0]["status_code"] == status
    assert words in stream.events[0]["message"]
    assert service.executor.runs == []


async def test_base_url_health_versions_metrics(start_app):
    service = await start_app(BinderHubService__base_url="services/binder")
    assert service.url.endswith("/services/binder/")
    versions = json.loads((await fetch(service.url + "versions")).body)
    assert versions == {"builder": "repo2docker 0.0-fake", "binderhub-service": "0.1.0.dev0"}
    health = json.loads((await fetch(service.url + "health")).body)
    assert health == {"ok": True, "checks": [{"service": "executor", "ok": True, "fake": True}]}
    await read_events(service.build_url("metered"))
    metrics = (await fetch(service.url + "metrics")).body.decode()
    assert (
        'binderhub_build_count_total{failure_class="",provider="git",status="success"}' in metrics
    )
    assert "binderhub_inprogress_builds" in metrics
    assert "binderhub_service_build_queue_length" in metrics
    assert "example.org" not in metrics


async def test_health_is_503_when_a_backend_fails(start_app, monkeypatch):
    service = await start_app()

    async def down() -> dict[str, Any]:
        raise OSError("engine gone")

    monkeypatch.setitem(service.app.health_checker.checks, "executor", down)
    response = await fetch(service.url + "health", raise_error=False)
    assert response.code == 503
    assert json.loads(response.body)["checks"][0] == {
        "service": "executor",
        "ok": False,
        "message": "check failed",
    }


async def test_shutdown_stops_builds_and_says_why(start_app):
    service = await start_app()
    task = asyncio.create_task(read_events(service.build_url("hang"), timeout=10))
    while not service.executor.runs:
        await asyncio.sleep(0.01)
    await service.app.build_manager.shutdown()
    stream = await task
    assert stream.events[-1] == {
        "phase": "failed",
        "message": "Build failed: The service shut down while the build ran; ask for it again.\n",
        "failure_class": "interrupted",
        "hint": hint(FailureClass.INTERRUPTED),
    }
    assert len(service.executor.cancelled) == 1


class DetachableExecutor(FakeExecutor):
    can_reattach = True


async def test_shutdown_leaves_reattachable_builds_running(start_app):
    service = await start_app(BinderHubService__executor_class=DetachableExecutor)
    task = asyncio.create_task(read_events(service.build_url("hang"), timeout=10))
    while not service.executor.runs:
        await asyncio.sleep(0.01)
    build = service.app.build_manager.get(service.executor.runs[0].build_id)
    await service.app.build_manager.shutdown()
    assert service.executor.detaching
    assert build is not None and build.state == "running"
    task.cancel()


async def test_wrong_method_answers_405_with_allow(start_app):
    service = await start_app()
    response = await fetch(service.url + "versions", method="DELETE", raise_error=False)
    assert response.code == 405
    assert response.headers["Allow"] == "GET"
    assert json.loads(response.body)["status"] == 405


async def test_a_temporary_failure_is_tried_again_once(start_app):
    service = await start_app(BuildManager__transient_failure_retry_delay=0)
    stream = await read_events(service.build_url("flaky"))
    assert stream.phases[-1] == "ready"
    assert len(service.executor.runs) == 2
    [retry] = [e for e in stream.events if "retry" in e]
    assert retry["phase"] == "waiting" and retry["failure_class"] == "registry_unavailable"
    assert "trying the build again" in retry["message"]
    metrics = (await AsyncHTTPClient().fetch(service.url + "metrics")).body.decode()
    assert 'binderhub_service_build_retries_total{failure_class="registry_unavailable"}' in metrics


async def test_a_failure_that_lasts_is_tried_again_only_once(start_app):
    service = await start_app(
        BuildManager__transient_failure_retry_delay=0, FakeExecutor__flaky_failures=5
    )
    stream = await read_events(service.build_url("flaky"))
    assert len(service.executor.runs) == 2
    assert len([e for e in stream.events if "retry" in e]) == 1
    assert stream.events[-1]["failure_class"] == "registry_unavailable"
    assert stream.events[-1]["hint"] == hint(FailureClass.REGISTRY_UNAVAILABLE)


@pytest.mark.parametrize("failure_class", ["build_error", "dependency_conflict", "unknown"])
async def test_failures_the_repository_causes_are_never_tried_again(start_app, failure_class):
    service = await start_app(
        BuildManager__transient_failure_retry_delay=0, FakeExecutor__failure_class=failure_class
    )
    stream = await read_events(service.build_url("will-fail"))
    assert len(service.executor.runs) == 1
    assert not any("retry" in e for e in stream.events)
    assert stream.events[-1]["failure_class"] == failure_class
    metrics = (await AsyncHTTPClient().fetch(service.url + "metrics")).body.decode()
    assert (
        f'binderhub_build_count_total{{failure_class="{failure_class}",provider="git",'
        'status="failure"}' in metrics
    )


async def test_retries_can_be_turned_off(start_app):
    service = await start_app(BuildManager__transient_failure_retries=0)
    stream = await read_events(service.build_url("flaky"))
    assert len(service.executor.runs) == 1
    assert stream.events[-1]["failure_class"] == "registry_unavailable"
