"""Bounded memory: a million-line build watched by clients that never read.

The service runs as its own process (``binderhub-service --config``) with the
fake executor of tests/fakes.py, which emits its lines in process: the real
engine clips output that comes this fast.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, launch_service
from tests.sse import read_events

LINES = 1_000_000
CLIENTS = 40
MAX_EVENTS = 100_000  # BuildManager.max_log_events' default
RSS_BOUND_MB = 300

ROOT = Path(__file__).resolve().parent.parent


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def stored_events(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT count(*) FROM build_events").fetchone()[0])


async def idle_client(host: str, port: int, path: str) -> asyncio.StreamWriter:
    """Ask for the event stream from the start (``Last-Event-ID: 0``), then never read.

    A small receive buffer keeps the kernel from taking much of the stream off the
    service's hands, so what the service holds per client shows in its memory.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        "Last-Event-ID: 0\r\n\r\n".encode()
    )
    await writer.drain()
    return writer


async def test_million_line_log_with_idle_subscribers_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    config = tmp_path / "config.py"
    config.write_text(
        "\n".join(
            [
                "from tests.fakes import FakeExecutor",
                "c.BinderHubService.executor_class = FakeExecutor",
                "c.BinderHubService.auth_enabled = False",
                "c.BinderHubService.ip = '127.0.0.1'",
                f"c.BinderHubService.port = {port}",
                f"c.BinderHubService.data_dir = {str(data_dir)!r}",
                "c.UserLimits.rate_limit_per_minute = 0",
                f"c.FakeExecutor.lines = {LINES}",
            ]
        )
        + "\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    service = launch_service(config, tmp_path, f"http://127.0.0.1:{port}/")
    database = data_dir / "binderhub-service.sqlite"
    writers: list[asyncio.StreamWriter] = []
    try:
        pid = service.proc.pid
        idle_rss = memory_mb(pid, "VmRSS")
        # A build that prints its million lines, then runs on until cancelled.
        repo_url, sha = "git://127.0.0.1:9/hang-million.git", "a" * 40
        request = urllib.request.Request(
            service.url + "api/v1/builds",
            data=json.dumps({"repo_url": repo_url, "ref": sha}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request) as response:
            build_id = json.load(response)["id"]
        deadline = time.monotonic() + 300
        while stored_events(database) < MAX_EVENTS:
            assert time.monotonic() < deadline, "the log never reached its cap"
            await asyncio.sleep(0.5)
        # Forty clients ask for the whole log so far and never read it.
        path = f"/build/git/{urllib.parse.quote(repo_url, safe='')}/{sha}?build_only=true"
        for _ in range(CLIENTS):
            writers.append(await idle_client("127.0.0.1", port, path))
        await asyncio.sleep(5)
        assert service.proc.poll() is None
        peak_rss = memory_mb(pid, "VmHWM")
        print(
            f"service RSS: {idle_rss:.0f} MB idle, {peak_rss:.0f} MB peak with {CLIENTS} "
            f"idle subscribers of a {LINES}-line build",
            file=sys.stderr,
        )
        assert peak_rss < RSS_BOUND_MB
        cancel = urllib.request.Request(
            service.url + f"api/v1/builds/{build_id}/cancel", data=b"", method="POST"
        )
        with urllib.request.urlopen(cancel, timeout=60) as response:
            assert json.load(response)["state"] == "cancelled"

        # The stored log stops at the cap, says so once, and ends with how the build ended.
        assert (database.stat().st_mode & 0o777) == 0o600
        assert (data_dir.stat().st_mode & 0o777) == 0o700
        stored = stored_events(database)
        with sqlite3.connect(database) as db:
            (truncated,) = db.execute(
                "SELECT count(*) FROM build_events WHERE data LIKE '%Log truncated%'"
            ).fetchone()
        assert MAX_EVENTS <= stored <= MAX_EVENTS + 3
        assert truncated == 1
        builds = [{"id": build_id}]

        # A client that reads gets the same bounded log.
        stream = await read_events(
            service.url + f"api/v1/builds/{builds[0]['id']}/events", timeout=120
        )
        assert len(stream.events) == stored
        assert stream.phases[-1] == "failed"
        assert stream.ids == list(range(1, stored + 1))
    finally:
        for writer in writers:
            writer.close()
        service.stop()
