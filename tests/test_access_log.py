"""The access log and the build route's last resort, in process with a fake executor."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from binderhub_service.app import BinderHubService
from binderhub_service.build_requests import BuildRequests

from .fakes import FakeExecutor
from .sse import read_events


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[BinderHubService, str]]:
    config = Config()
    config.BinderHubService.executor_class = FakeExecutor
    config.BinderHubService.auth_enabled = False
    config.BinderHubService.data_dir = str(tmp_path)
    app = BinderHubService(config=config)
    app.initialize([])
    sock, port = bind_unused_port()
    server = HTTPServer(app.tornado_app)
    server.add_sockets([sock])
    yield app, f"http://127.0.0.1:{port}/"
    server.stop()
    await app.build_manager.shutdown()


async def test_a_refused_build_request_logs_the_stream_status_and_why(
    service: tuple[BinderHubService, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = service
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        stream = await read_events(url + "build/nope/spec?build_only=true&token=s3cret")
    assert stream.status == 200 and stream.events[-1]["status_code"] == 404
    [record] = [r for r in caplog.records if r.name == "tornado.access"]
    line = record.getMessage()
    assert record.levelno == logging.WARNING, "a refusal is not logged as a success"
    assert line.startswith("200 GET /build/nope/spec?build_only=true&token=[secret]")
    assert "[stream: failed 404: " in line and "nope" in line.split("[stream:")[1]
    assert "s3cret" not in line


async def test_an_unexpected_error_on_the_build_route_is_a_failed_event(
    service: tuple[BinderHubService, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = service

    async def broken(*args: object) -> None:
        raise ValueError("/srv/secret/path exploded")

    monkeypatch.setattr(BuildRequests, "resolve", broken)
    stream = await read_events(url + "build/git/x/y?build_only=true")
    assert stream.status == 200
    assert stream.phases == ["failed"]
    assert stream.events[0]["status_code"] == 500
    assert "internal error" in stream.events[0]["message"]
    assert "/srv" not in stream.events[0]["message"]
