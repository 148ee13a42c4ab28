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
from binderhub_service.auth import Identity, ServiceAuth
from tests.conftest import LOOPBACK_NETWORKS
from tests.fakes import FakeExecutor


class HeaderAuthenticator(ServiceAuth):
    """Test-only authenticator: ``X-Test-User`` names the user, ``X-Test-Admin: 1`` makes
    an admin, ``X-Test-Groups: a,b`` names their hub groups; without the header a request
    is anonymous, as with authentication off.

    Chosen by ``c.BinderHubService.authenticator_class`` in :func:`make_service`, so
    requests take the service's own auth and limit path.
    """

    async def authenticate(
        self, handler: web.RequestHandler, *, api: bool = True
    ) -> Identity | None:
        name = handler.request.headers.get("X-Test-User")
        if name is None:
            return await super().authenticate(handler, api=api)
        return Identity(
            name=name,
            kind="user",
            is_admin=handler.request.headers.get("X-Test-Admin") == "1",
            can_build=True,
            limit_key=f"user:{name}",
            groups=frozenset(
                filter(None, handler.request.headers.get("X-Test-Groups", "").split(","))
            ),
        )


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
        groups: tuple[str, ...] = (),
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["X-Test-User"] = user
        if admin:
            all_headers["X-Test-Admin"] = "1"
        if groups:
            all_headers["X-Test-Groups"] = ",".join(groups)
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
                "from tests.api.conftest import HeaderAuthenticator",
                "c.BinderHubService.executor_class = FakeExecutor",
                "c.BinderHubService.auth_enabled = False",
                "c.BinderHubService.authenticator_class = HeaderAuthenticator",
                "c.UserLimits.rate_limit_per_minute = 6000",
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
    """The service's own Tornado application."""
    return service.tornado_app


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
