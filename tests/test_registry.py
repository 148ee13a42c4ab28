"""The registry client against a real registry: anonymous, basic auth, bearer tokens.

Bearer tokens need a token server, which the Debian registry cannot be told to
trust without certificates; that flow runs against a small registry emulation
on loopback (Tornado) that speaks the distribution API's challenge protocol.
"""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from binderhub_service.errors import UpstreamError
from binderhub_service.registry import MANIFEST_MEDIA_TYPES, DockerRegistry

from .conftest import Registry, start_registry, stop_process

pytestmark = pytest.mark.docker


def push_image(registry: Registry, tmp_path: Path, name: str) -> str:
    """Push a one-file image (small, so the push is quick)."""
    image = f"{registry.host}/{name}"
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "rootfs" / "hello").write_text("hello")
    tar = subprocess.run(["tar", "-C", tmp_path / "rootfs", "-c", "."], capture_output=True)
    subprocess.run(["docker", "import", "-", image], input=tar.stdout, check=True)
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", image], check=True, capture_output=True)
    return image


def docker_config(tmp_path: Path, host: str, user: str, password: str) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return str(path)


def client_digest(registry: Registry, repository: str, tag: str) -> str:
    """The digest the registry gives a tag's manifest."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_MEDIA_TYPES},
    )
    with urllib.request.urlopen(request) as response:
        return str(response.headers["Docker-Content-Digest"])


async def test_anonymous_registry(registry, tmp_path, docker_engine):
    image = push_image(registry, tmp_path, "anon/present:v1")
    client = DockerRegistry(url=registry.url, docker_config_path="/nonexistent/config.json")
    assert await client.has_image(image)
    assert not await client.has_image(f"{registry.host}/anon/present:v2")
    assert not await client.has_image(f"{registry.host}/anon/absent:v1")
    assert await client.health() == {"url": registry.url}
    # By digest, as a saved image may be named.
    digest = client_digest(registry, "anon/present", "v1")
    assert await client.has_image(f"{registry.host}/anon/present@{digest}")
    assert await client.has_image(f"{registry.host}/anon/present:v1@{digest}")
    assert not await client.has_image(f"{registry.host}/anon/present@sha256:{'0' * 64}")


@pytest.fixture
def basic_auth_registry(tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = root / "htpasswd"
    with open(htpasswd, "w") as f:
        subprocess.run(["htpasswd", "-Bbn", "builder", "s3cret-pass"], stdout=f, check=True)
    auth = textwrap.dedent(
        f"""\
        auth:
          htpasswd:
            realm: test
            path: {htpasswd}
        """
    )
    proc, registry = start_registry(root, auth)
    login = subprocess.run(
        ["docker", "login", "-u", "builder", "--password-stdin", registry.host],
        input=b"s3cret-pass",
        capture_output=True,
    )
    assert login.returncode == 0, login.stderr
    image = push_image(registry, root, "private/present:v1")
    yield registry, image
    subprocess.run(["docker", "logout", registry.host], capture_output=True)
    stop_process(proc)


async def test_basic_auth_registry(basic_auth_registry, tmp_path):
    registry, image = basic_auth_registry
    config = docker_config(tmp_path, registry.host, "builder", "s3cret-pass")
    client = DockerRegistry(url=registry.url, docker_config_path=config)
    assert await client.has_image(image)
    assert not await client.has_image(f"{registry.host}/private/absent:v1")

    wrong = DockerRegistry(
        url=registry.url,
        docker_config_path=docker_config(tmp_path, registry.host, "builder", "wrong"),
    )
    with pytest.raises(UpstreamError) as error:
        await wrong.has_image(image)
    assert "401" in error.value.message
    assert "wrong" not in error.value.message

    anonymous = DockerRegistry(url=registry.url, docker_config_path="/nonexistent.json")
    with pytest.raises(UpstreamError):
        await anonymous.health()


class TokenRegistry:
    """Just enough of a registry with a token server to exercise the bearer flow."""

    def __init__(self) -> None:
        self.token_requests: list[dict[str, str]] = []
        sock, self.port = bind_unused_port()
        registry = self

        class Token(web.RequestHandler):
            def get(self) -> None:
                expected = "Basic " + base64.b64encode(b"robot:tok-pass").decode()
                if self.request.headers.get("Authorization") != expected:
                    raise web.HTTPError(401)
                registry.token_requests.append(
                    {k: self.get_argument(k) for k in ("service", "scope")}
                )
                self.write({"token": "abc123", "expires_in": 300})

        class Manifest(web.RequestHandler):
            def head(self, name: str, tag: str) -> None:
                if self.request.headers.get("Authorization") != "Bearer abc123":
                    self.set_status(401)
                    self.set_header(
                        "WWW-Authenticate",
                        f'Bearer realm="http://127.0.0.1:{registry.port}/token",'
                        f'service="test-registry",scope="repository:{name}:pull"',
                    )
                    return
                self.set_status(200 if tag == "v1" else 404)

        app = web.Application([("/token", Token), (r"/v2/(.+)/manifests/([^/]+)", Manifest)])
        self.server = HTTPServer(app)
        self.server.add_sockets([sock])


async def test_bearer_token_flow(tmp_path):
    upstream = TokenRegistry()
    host = f"127.0.0.1:{upstream.port}"
    try:
        client = DockerRegistry(
            url=f"http://{host}",
            docker_config_path=docker_config(tmp_path, host, "robot", "tok-pass"),
        )
        assert await client.has_image(f"{host}/org/image:v1")
        assert not await client.has_image(f"{host}/org/image:v2")
        # One token request; the token is reused for the same scope.
        assert upstream.token_requests == [
            {"service": "test-registry", "scope": "repository:org/image:pull"}
        ]
    finally:
        upstream.server.stop()
