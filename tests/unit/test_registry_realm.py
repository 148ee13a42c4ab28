"""The registry's credentials go only to a token service on the registry's own host.

An emulated registry (127.0.0.1) answers 401 with a bearer challenge naming a
token service; the token service records what it is sent. 127.0.0.2 plays
another host. Both are small Tornado apps on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from binderhub_service.errors import UpstreamError
from binderhub_service.registry import DockerRegistry

PASSWORD = "pl4nted-registry-password"


@dataclass
class Realm:
    url: str = ""
    authorizations: list[str | None] = field(default_factory=list)


class TokenHandler(RequestHandler):
    def initialize(self, realm: Realm) -> None:
        self.realm = realm

    def get(self) -> None:
        self.realm.authorizations.append(self.request.headers.get("Authorization"))
        self.write({"token": "t0ken", "expires_in": 300})


class RegistryHandler(RequestHandler):
    def initialize(self, realm: Realm) -> None:
        self.realm = realm

    def get(self) -> None:
        if self.request.headers.get("Authorization") != "Bearer t0ken":
            self.set_status(401)
            self.set_header("WWW-Authenticate", f'Bearer realm="{self.realm.url}",service="reg"')
            return
        self.write("{}")


async def serve(host: str, app: Application) -> tuple[HTTPServer, int]:
    sockets = bind_sockets(0, host)
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


@pytest.fixture
async def registry_and_realms(tmp_path: Path) -> AsyncIterator[tuple[DockerRegistry, dict]]:
    realm = Realm()
    realms = {}
    servers = []
    for host in ("127.0.0.1", "127.0.0.2"):
        server, port = await serve(host, Application([(r"/token", TokenHandler, {"realm": realm})]))
        servers.append(server)
        realms[host] = f"http://{host}:{port}/token"
    server, port = await serve(
        "127.0.0.1", Application([(r"/v2/", RegistryHandler, {"realm": realm})])
    )
    servers.append(server)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"auths": {f"127.0.0.1:{port}": {"username": "u", "password": PASSWORD}}})
    )
    registry = DockerRegistry(url=f"http://127.0.0.1:{port}", docker_config_path=str(config))
    yield registry, {"realm": realm, **realms}
    for server in servers:
        server.stop()
        await server.close_all_connections()


async def test_basic_credentials_go_to_a_realm_on_the_registry_host(registry_and_realms):
    registry, realms = registry_and_realms
    realms["realm"].url = realms["127.0.0.1"]
    assert await registry.health() == {"url": registry.url}
    assert realms["realm"].authorizations[0].startswith("Basic ")


async def test_no_credentials_for_a_realm_on_another_host(registry_and_realms):
    registry, realms = registry_and_realms
    realms["realm"].url = realms["127.0.0.2"]
    assert await registry.health() == {"url": registry.url}
    assert realms["realm"].authorizations == [None]


async def test_another_realm_host_when_the_operator_names_it(registry_and_realms):
    registry, realms = registry_and_realms
    registry.token_realm_hosts = ["127.0.0.2"]
    realms["realm"].url = realms["127.0.0.2"]
    await registry.health()
    assert realms["realm"].authorizations[0].startswith("Basic ")


@pytest.mark.parametrize("realm", ["file:///etc/passwd", "ftp://127.0.0.1/token", "//x/token"])
async def test_realm_that_is_not_http_gets_nothing(registry_and_realms, realm):
    registry, realms = registry_and_realms
    realms["realm"].url = realm
    with pytest.raises(UpstreamError):
        await registry.health()
    assert realms["realm"].authorizations == []
