"""The HTTP server's bounds, in process (fake executor) on the server the service builds:
request bodies capped before authentication, idle and half-sent requests closed,
forwarded-for headers ignored unless trusted, security headers on every answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import bind_unused_port

from binderhub_service.app import BinderHubService
from tests.api.conftest import make_service
from tests.sse import read_events


async def serve(tmp_path: Path, *config_lines: str) -> AsyncIterator[tuple[BinderHubService, int]]:
    service = make_service(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        tmp_path,
        "c.BinderHubService.idle_connection_timeout = 1.0",
        "c.BinderHubService.body_timeout = 1.0",
        *config_lines,
    )
    await service.start_store()
    sock, port = bind_unused_port()
    server = service.http_server()
    server.add_sockets([sock])
    yield service, port
    server.stop()
    await server.close_all_connections()
    await service.build_manager.shutdown()
    await service.stop_store()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[BinderHubService, int]]:
    async for value in serve(tmp_path, "c.UserLimits.rate_limit_per_minute = 0"):
        yield value


@pytest.fixture
async def rate_limited(tmp_path: Path) -> AsyncIterator[tuple[BinderHubService, int]]:
    """A service that allows 3 requests at once per client, then 1 a second."""
    async for value in serve(
        tmp_path, "c.UserLimits.rate_limit_per_minute = 60", "c.UserLimits.rate_limit_burst = 3"
    ):
        yield value


async def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``head`` (and ``body``, as far as the server takes it); what came back
    before the server closed the connection (it may reset it, unread data pending)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(head + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return answer


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_huge_bodies_are_refused_from_their_headers(
    served: tuple[BinderHubService, int],
) -> None:
    _, port = served
    before = max_rss_mb()
    head = (
        b"POST /api/v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    )
    answers = await asyncio.gather(
        *(raw_request(port, head, b"{" * (1024 * 1024)) for _ in range(10))
    )
    for answer in answers:
        assert answer in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    chunked = (
        b"POST /api/v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"100000\r\n"
    )
    assert await raw_request(port, chunked, b"[" * 0x100000) in (
        b"",
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
    )
    # Nothing of the 100 MB was buffered.
    assert max_rss_mb() - before < 50


async def test_idle_and_half_sent_requests_are_closed(
    served: tuple[BinderHubService, int],
) -> None:
    _, port = served
    # A connection that never sends its headers is closed after idle_connection_timeout.
    assert await raw_request(port, b"", timeout=5) == b""
    # One that never finishes its body is closed after body_timeout.
    head = b"POST /api/v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"
    answer = await raw_request(port, head, timeout=5)
    assert b"201" not in answer and b"202" not in answer


async def test_deeply_nested_json_is_a_400(served: tuple[BinderHubService, int]) -> None:
    _, port = served
    body = "[" * 5000 + "]" * 5000
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{port}/api/v1/builds", method="POST", body=body, raise_error=False
    )
    assert response.code == 400
    assert "nested too deeply" in json.loads(response.body)["message"]


async def test_forwarded_for_does_not_escape_the_rate_limit(
    rate_limited: tuple[BinderHubService, int],
) -> None:
    _, port = rate_limited
    codes = []
    for i in range(5):
        response = await AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{port}/api/v1/builds",
            headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-Ip": f"203.0.113.{i}"},
            raise_error=False,
        )
        codes.append(response.code)
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]


def assert_security_headers(headers: Any) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_every_answer_has_security_headers(served: tuple[BinderHubService, int]) -> None:
    _, port = served
    client = AsyncHTTPClient()
    for path in ("api/v1/builds", "api/v1/nothing", "no/such/route", "versions"):
        response = await client.fetch(f"http://127.0.0.1:{port}/{path}", raise_error=False)
        assert response.code != 500, path
        assert_security_headers(response.headers)
    stream = await read_events(f"http://127.0.0.1:{port}/build/gh/a/b/c")
    assert stream.phases == ["failed"]
    assert stream.headers["x-content-type-options"] == "nosniff"
    assert stream.headers["content-security-policy"].startswith("default-src 'none'")


async def test_odd_specs_are_refused_never_a_500(served: tuple[BinderHubService, int]) -> None:
    _, port = served
    client = AsyncHTTPClient()
    for url in (
        "https://a:99999/x",
        "https://\uff21\u2100.com/x",
        "https://[::1/x",
        "git://%00/x",
        "https://x/" + "a" * 3000,
    ):
        quoted = urllib.parse.quote(url, safe="")
        stream = await read_events(
            f"http://127.0.0.1:{port}/build/git/{quoted}/HEAD?build_only=true"
        )
        assert stream.status == 200 and stream.phases == ["failed"], url
        assert stream.events[0]["status_code"] in (400, 403, 404, 503), url
        response = await client.fetch(
            f"http://127.0.0.1:{port}/api/v1/builds",
            method="POST",
            body=json.dumps({"repo_url": url, "ref": "HEAD"}),
            raise_error=False,
        )
        assert response.code in (400, 403, 404, 503), (url, response.body)


async def test_a_client_that_stops_reading_is_disconnected(tmp_path: Path) -> None:
    async for service, port in serve(
        tmp_path,
        "c.UserLimits.rate_limit_per_minute = 0",
        "c.BuildManager.stream_write_timeout = 1.0",
        "c.FakeExecutor.lines = 120000",
    ):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        repo = urllib.parse.quote("git://127.0.0.1:9/hang-idle.git", safe="")
        writer.write(
            f"GET /build/git/{repo}/{'a' * 40}?build_only=true HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        while not service.executor.runs:
            await asyncio.sleep(0.05)
        # Long past the timeout, however busy the service was when the request came.
        await asyncio.sleep(6)
        # The service gave up on this client: what it had sent ends, then the connection.
        received = 0
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                while chunk := await reader.read(65536):
                    received += len(chunk)
        writer.close()
        assert 0 < received < 5 * 1024 * 1024  # less than the log: the stream was cut
        assert not service.build_manager.get(service.executor.runs[0].build_id).done
