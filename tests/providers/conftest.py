"""Provider test fixtures: an emulated upstream HTTP host and a git daemon, on loopback."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerRequest
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

Reply = tuple[int, dict[str, str], Any]
Responder = Callable[[HTTPServerRequest], Any]


@dataclass
class Upstream:
    """A scriptable HTTP host: ``routes`` maps a path to a reply or a function returning one.

    A reply is ``(status, headers, body)``; a dict or list body is sent as JSON.
    Every request received is kept in ``requests``. ``hang`` is an event that
    slow responders wait on; the fixture sets it when the test ends.
    """

    url: str = ""
    routes: dict[str, Reply | Responder] = field(default_factory=dict)
    requests: list[HTTPServerRequest] = field(default_factory=list)
    hang: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


class _Emulator(RequestHandler):
    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def get(self) -> None:
        self.upstream.requests.append(self.request)
        reply = self.upstream.routes.get(self.request.path)
        if callable(reply):
            reply = reply(self.request)
            if inspect.isawaitable(reply):
                reply = await reply
        if reply is None:
            reply = (404, {}, {"message": "Not Found"})
        status, headers, body = reply
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        if body is not None and status != 304:
            if isinstance(body, dict | list):
                self.set_header("Content-Type", "application/json")
                body = json.dumps(body)
            self.write(body)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    emulated = Upstream()
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    emulated.url = f"http://127.0.0.1:{port}"
    app = Application([(r"/.*", _Emulator, {"upstream": emulated})])
    server = HTTPServer(app)
    server.add_sockets(sockets)
    yield emulated
    emulated.hang.set()
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class GitServer:
    """A bare repository ``repo.git`` served by ``git daemon``, and its commits."""

    url: str
    commits: dict[str, str]


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("one\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "version 1", cwd=work)
    git("checkout", "-q", "-b", "feature/x", cwd=work)
    (work / "README").write_text("two\n")
    git("commit", "-q", "-am", "two", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={root}",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--reuseaddr",
            str(root),
        ],
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or daemon.poll() is not None:
                daemon.kill()
                raise RuntimeError("git daemon did not start") from None
            time.sleep(0.05)
    try:
        yield GitServer(
            url=f"git://127.0.0.1:{port}/repo.git",
            commits={"main": first, "v1": first, "feature/x": second},
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
