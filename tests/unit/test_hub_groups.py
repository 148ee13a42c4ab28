"""Reading a user's hub groups from a hub API on loopback (a small real HTTP server
standing in for the hub's ``GET /users/{name}``)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from binderhub_service.hub_groups import HubGroups


class FakeHubApi(BaseHTTPRequestHandler):
    """Bob is in ``lab``; the token ``bad`` is refused; every request is counted."""

    asked: list[str] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.headers.get("Authorization") != "token good":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"name": "bob", "groups": ["lab"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hub_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hub/api"
    server.shutdown()
    server.server_close()


async def test_groups_are_read_and_cached(hub_api: str) -> None:
    FakeHubApi.asked.clear()
    groups = HubGroups(hub_api, "good")
    assert await groups.groups_of("bob") == {"lab"}
    assert await groups.groups_of("bob") == {"lab"}
    assert FakeHubApi.asked == ["/hub/api/users/bob"]
    await groups.groups_of("a user/../x")
    assert FakeHubApi.asked[-1] == "/hub/api/users/a%20user%2F..%2Fx"


async def test_a_refusal_means_no_groups_and_a_warning(
    hub_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    groups = HubGroups(hub_api, "bad")
    with caplog.at_level(logging.WARNING):
        assert await groups.groups_of("bob") == frozenset()
    assert "read:users:groups" in caplog.text and "bad" not in caplog.text


async def test_an_unreachable_hub_means_no_groups() -> None:
    groups = HubGroups("http://127.0.0.1:9/hub/api", "good", timeout=2)
    assert await groups.groups_of("bob") == frozenset()
