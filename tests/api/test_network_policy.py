"""Through the service's own API: denied networks give 403, unreadable URLs 400, never 500.

In process (fake executor) with ``denied_networks`` set back to loopback and
private ranges; a loopback listener stands in for an internal service.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.api.conftest import Api, api_app, make_service
from tests.sse import read_events

DENIED = "c.RepoProviderCatalog.denied_networks = ['127.0.0.0/8', '10.0.0.0/8', '::1/128']"


@pytest.fixture
async def guarded_api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    service = make_service(db_url, tmp_path, DENIED)
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(api_app(service))
    server.add_sockets([sock])
    yield Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service)
    server.stop()
    await service.build_manager.shutdown()
    await service.stop_store()


@pytest.fixture
async def internal() -> AsyncIterator[list[int]]:
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    connections.append(server.sockets[0].getsockname()[1])
    yield connections
    server.close()
    await server.wait_closed()


async def test_denied_and_unreadable_urls(guarded_api: Api, internal: list[int]) -> None:
    port = internal[0]
    cases = [
        (f"git://127.0.0.1:{port}/x.git", 403),
        (f"git://2130706433:{port}/x.git", 403),
        (f"https://[::ffff:127.0.0.1]:{port}/x.git", 403),
        ("https://10.1.2.3/x.git", 403),
        ("https://example.org:99999/x.git", 400),
        ("https://exa\uff03mple.org/x.git", 400),
        ("https://[::1/x.git", 400),
    ]
    for url, expected in cases:
        status, body = await guarded_api.call("POST", "builds", {"repo_url": url, "ref": "main"})
        assert status == expected, (url, body)
        assert body["message"]
        if "127.0.0.1" not in url:
            # What the host resolved to is never told.
            assert "127.0.0.1" not in body["message"]
    assert internal == [port], "the internal listener was contacted"


async def test_build_stream_fails_cleanly(guarded_api: Api, internal: list[int]) -> None:
    base = guarded_api.url.removesuffix("api/v1/")
    for url, expected in (
        (f"git://127.0.0.1:{internal[0]}/x.git", 403),
        ("https://example.org:99999/x.git", 400),
    ):
        spec = urllib.parse.quote(url, safe="") + "/main"
        stream = await read_events(f"{base}build/git/{spec}?build_only=true", timeout=30)
        assert stream.phases == ["failed"], stream.events
        assert stream.events[0]["status_code"] == expected
    assert internal == [internal[0]]
