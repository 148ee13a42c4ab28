"""Rate limits and start-up checks, in process (no hub, no builds)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from binderhub_service.app import BinderHubService
from binderhub_service.limits import RateLimited, TokenBuckets, UserLimits
from tests.sse import read_events


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, capacity=2, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0, "keys are independent"
    now[0] = 1.5
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)


def test_rate_limited_says_when_to_retry() -> None:
    limits = UserLimits(rate_limit_per_minute=1, rate_limit_burst=1)
    limits.check_rate("user:alice")
    with pytest.raises(RateLimited) as e:
        limits.check_rate("user:alice")
    assert e.value.status_code == 429
    assert 59 <= e.value.retry_after <= 60
    assert f"Try again in {e.value.retry_after} seconds" in e.value.message


def test_zero_disables_limits() -> None:
    limits = UserLimits(rate_limit_per_minute=0, max_concurrent_builds_per_user=0)
    for _ in range(1000):
        limits.check_rate("user:alice")
    limits.check_new_build("user:alice", 1000)


def make_app(tmp_path: Path, *lines: str) -> BinderHubService:
    config = tmp_path / "config.py"
    config.write_text("\n".join(lines) + "\n")
    app = BinderHubService()
    app.initialize(["--config", str(config)])
    return app


@pytest.fixture
def no_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(name, raising=False)


def test_auth_without_hub_env_fails_at_start(
    tmp_path: Path, no_hub_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        make_app(tmp_path)
    err = capsys.readouterr().err
    assert "JUPYTERHUB_API_TOKEN" in err
    assert "auth_enabled = False" in err


def test_auth_off_warns_at_start(
    tmp_path: Path, no_hub_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    make_app(tmp_path, "c.BinderHubService.auth_enabled = False")
    assert "WARNING | Authentication is off" in capsys.readouterr().err


async def test_rate_limit_answers_429_event_and_json(tmp_path: Path, no_hub_env: None) -> None:
    app = make_app(
        tmp_path,
        "c.BinderHubService.auth_enabled = False",
        "c.UserLimits.rate_limit_per_minute = 2",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = HTTPServer(app.tornado_app)
    server.listen(port, "127.0.0.1")
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(2):
            stream = await read_events(base + "build/nope/spec?build_only=true")
            assert stream.events[-1]["status_code"] == 404
        stream = await read_events(base + "build/nope/spec?build_only=true")
        assert [(e["phase"], e["status_code"]) for e in stream.events] == [("failed", 429)]
        assert "Try again in" in stream.events[0]["message"]

        client = AsyncHTTPClient(force_instance=True)
        response = await client.fetch(base + "metrics", raise_error=False)
        client.close()
        assert response.code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert json.loads(response.body)["status"] == 429
        assert response.headers["Content-Type"] == "application/json"
    finally:
        server.stop()
        await app.executor.shutdown()
