"""Known secrets never reach events, records or the service's log: in process (fake
executor that prints them), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.api.conftest import Api, api_app, make_service
from tests.api.test_api import wait_state
from tests.sse import read_events

HUB_TOKEN = "planted-hub-token-0001"
COOKIE_SECRET = "c0ffee" * 8
PROVIDER_TOKEN = "planted-provider-token-0002"
REGISTRY_PASSWORD = "planted-registry-pw-0003"
GIT_PASSWORD = "planted-git-pw-0004"
SECRETS = (HUB_TOKEN, COOKIE_SECRET, PROVIDER_TOKEN, REGISTRY_PASSWORD, GIT_PASSWORD)


async def test_planted_secrets_are_redacted_everywhere(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("BINDERHUB_SERVICE_COOKIE_SECRET", COOKIE_SECRET)
    docker_config = tmp_path / "config.json"
    auth = base64.b64encode(f"pusher:{REGISTRY_PASSWORD}".encode()).decode()
    docker_config.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))
    leak = " ".join(SECRETS)
    service = make_service(
        db_url,
        tmp_path,
        f"c.GitHubRepoProvider.access_token = {PROVIDER_TOKEN!r}",
        f"c.DockerRegistry.docker_config_path = {str(docker_config)!r}",
        f"c.FakeExecutor.extra_line = {'leak: ' + leak!r}",
        f"c.FakeExecutor.failure_message = {'failed: ' + leak!r}",
    )
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(api_app(service))
    server.add_sockets([sock])
    api = Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service)
    try:
        build = service.build_manager.request_build(
            provider="git",
            repo_url="git://127.0.0.1:9/will-fail.git",
            ref="a" * 40,
            image_name="binder-leak:1",
            push=False,
            requester="alice",
            git_credential=f"username=builder\\npassword={GIT_PASSWORD}",
        )
        service.log.info("A log line naming %s", leak)
        record = await wait_state(api, build.id, "failed", user="alice")
        stream = await read_events(
            f"{api.url}builds/{build.id}/events", headers={"X-Test-User": "alice"}
        )
        stored = [data async for _, data in service.store.events(build.id)]
    finally:
        server.stop()
        await service.build_manager.shutdown()
        await service.stop_store()
    log = capfd.readouterr().err
    assert "leak: " + " ".join(["***"] * len(SECRETS)) + "\n" in stream.messages
    assert record["failure_reason"] == "failed: " + " ".join(["***"] * len(SECRETS))
    assert "A log line naming ***" in log
    for secret in SECRETS:
        for where, text in (
            ("record", json.dumps(record)),
            ("events", json.dumps(stream.events)),
            ("stored log", "\n".join(stored)),
            ("service log", log),
        ):
            assert secret not in text, (secret, where)
