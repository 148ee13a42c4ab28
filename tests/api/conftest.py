"""API fixtures: an in-process service with a fake executor, on SQLite and on PostgreSQL.

The ``db_url`` fixture (tests/conftest.py) gives SQLite and the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from binderhub_service.app import BinderHubService
from binderhub_service.auth import Identity
from binderhub_service.handlers.base import BaseHandler
from tests.conftest import LOOPBACK_NETWORKS
from tests.fakes import FakeExecutor


class HeaderIdentity(BaseHandler):
    """Test-only identity: ``X-Test-User`` names the user, ``X-Test-Admin: 1`` makes an admin.

    Mixed into the API's handler classes by :func:`with_header_identity`; the
    service itself never reads these headers.
    """

    def current_identity(self) -> Identity:
        name = self.request.headers.get("X-Test-User")
        if name is None:
            return super().current_identity()
        return Identity(
            name=name,
            kind="user",
            is_admin=self.request.headers.get("X-Test-Admin") == "1",
            can_build=True,
            limit_key=f"user:{name}",
        )


def with_header_identity(routes: list[Any]) -> list[Any]:
    wrapped = []
    for pattern, handler, *args in routes:
        cls = type(handler.__name__, (HeaderIdentity, handler), {})
        wrapped.append((pattern, cls, *args))
    return wrapped


@dataclass
class Api:
    """An in-process service (fake executor) with the API on a loopback port."""

    url: str
    service: BinderHubService

    @property
    def executor(self) -> FakeExecutor:
        assert isinstance(self.service.executor, FakeExecutor)
        return self.service.executor

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        user: str | None = None,
        admin: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["X-Test-User"] = user
        if admin:
            all_headers["X-Test-Admin"] = "1"
        response = await AsyncHTTPClient().fetch(
            self.url + path,
            method=method,
            headers=all_headers,
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            raise_error=False,
        )
        text = response.body.decode() if response.body else ""
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.code, json.loads(text)
        return response.code, text


def make_service(db_url: str, tmp_path: Path, *config_lines: str) -> BinderHubService:
    config = tmp_path / "config.py"
    config.write_text(
        "\n".join(
            [
                "from tests.fakes import FakeExecutor",
                "c.BinderHubService.executor_class = FakeExecutor",
                "c.BinderHubService.auth_enabled = False",
                f"c.BinderHubService.db_url = {db_url!r}",
                f"c.BinderHubService.data_dir = {str(tmp_path / 'data')!r}",
                "c.BuildRecorder.flush_interval = 0.05",
                LOOPBACK_NETWORKS,
                *config_lines,
            ]
        )
    )
    service = BinderHubService()
    service.initialize(["--config", str(config)])
    return service


def api_app(service: BinderHubService) -> web.Application:
    rules = service.tornado_app.wildcard_router.rules
    return web.Application(
        with_header_identity(
            [(rule.matcher.regex.pattern, rule.target, rule.target_kwargs) for rule in rules]
        )
    )


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    service = make_service(db_url, tmp_path)
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(api_app(service))
    server.add_sockets([sock])
    yield Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service)
    server.stop()
    await service.build_manager.shutdown()
    await service.stop_store()


@pytest.fixture
def threaded_api_url(tmp_path: Path) -> Iterator[str]:
    """The API of an in-process service on its own thread and loop (for sync clients).

    Only the ``git`` provider, for ``file:`` URLs: nothing leaves this machine.
    """
    ready = threading.Event()
    stopping: list[Callable[[], None]] = []
    url: list[str] = []

    async def serve() -> None:
        service = make_service(
            f"sqlite+aiosqlite:///{tmp_path / 'threaded.sqlite'}",
            tmp_path,
            "from binderhub_service.providers.git import GitRepoProvider",
            "c.RepoProviderCatalog.provider_classes = {'git': GitRepoProvider}",
            "c.GitRepoProvider.allowed_schemes = ['file']",
        )
        await service.start_store()
        sock, port = bind_unused_port()
        server = HTTPServer(api_app(service))
        server.add_sockets([sock])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        url.append(f"http://127.0.0.1:{port}/api/v1/")
        ready.set()
        await stop.wait()
        server.stop()
        await service.build_manager.shutdown()
        await service.stop_store()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the threaded service did not start"
    yield url[0]
    stopping[0]()
    thread.join(30)
