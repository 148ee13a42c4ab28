"""The JupyterHub how-to (docs/source/howto/add-to-jupyterhub.md), run as written.

A real JupyterHub runs the how-to's ``jupyterhub_config.py`` blocks verbatim, in
order, after a preamble for this machine (loopback ports, the proxy from
tests/js, the dummy authenticator) and followed by the only changes a test must
make: the service's port and config path, and an admin service whose token
stands for ``$HUB_ADMIN_TOKEN``. The service runs the how-to's own config
block, with its data folder and registry moved to the test's (loopback only).
The how-to's ``curl`` commands run with the hub's URL in place of
``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Registry, free_port, stop_process, wait_for_http
from tests.docs_snippets import block_starting, code_blocks
from tests.hub.conftest import CHP, wait_for_ok
from tests.sse import read_events

PAGE = "howto/add-to-jupyterhub.md"
DOCUMENTED_HUB = "http://127.0.0.1:8000"


@dataclass
class HowtoHub:
    url: str
    admin_token: str
    proc: subprocess.Popen

    def curl(self, snippet: str, **env: str) -> str:
        """Run a how-to's shell snippet against this hub; its standard output."""
        command = snippet.replace(DOCUMENTED_HUB, self.url.rstrip("/"))
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            env={**os.environ, "HUB_ADMIN_TOKEN": self.admin_token, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        return result.stdout


def hub_config(root: Path, port: int, service_port: int, admin_token: str) -> str:
    preamble = textwrap.dedent(
        f"""\
        c = get_config()  # noqa: F821
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {free_port()}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
        c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
        c.JupyterHub.db_url = "sqlite:///{root / "hub.sqlite"}"
        c.JupyterHub.cookie_secret_file = "{root / "cookie_secret"}"
        c.JupyterHub.pid_file = "{root / "hub.pid"}"
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allowed_users = {{"alice", "bob"}}
        """
    )
    documented = [
        block_starting(PAGE, "# jupyterhub_config.py").body,
        block_starting(PAGE, "# jupyterhub_config.py, after the block above").body,
    ]
    machine = textwrap.dedent(
        f"""\
        c.JupyterHub.services[0]["url"] = "http://127.0.0.1:{service_port}"
        c.JupyterHub.services[0]["command"][-1] = {str(root / "service_config.py")!r}
        c.JupyterHub.services.append({{"name": "test-admin", "api_token": {admin_token!r}}})
        c.JupyterHub.load_roles.append(
            {{
                "name": "test-admin",
                "scopes": ["admin:users", "admin:groups", "tokens"],
                "services": ["test-admin"],
            }}
        )
        """
    )
    return "\n".join([preamble, *documented, machine])


@pytest.fixture(scope="module")
def howto_hub(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[HowtoHub]:
    if not CHP.exists():
        pytest.fail("configurable-http-proxy is missing: run .ci/install-node-deps first.")
    root = tmp_path_factory.mktemp("howto-hub")
    port, service_port = free_port(), free_port()
    admin_token = secrets.token_hex(16)
    (root / "jupyterhub_config.py").write_text(hub_config(root, port, service_port, admin_token))
    service_config = block_starting(PAGE, "# /etc/binderhub-service/config.py").body
    (root / "service_config.py").write_text(
        service_config
        + f"c.BinderHubService.data_dir = {str(root / 'data')!r}\n"
        + f"c.DockerRegistry.url = {registry.url!r}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    # `binderhub-service`, as the how-to's command names it, is this virtualenv's.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["BINDERHUB_SPAWN_HOOK_TOKEN"] = secrets.token_hex(16)
    with open(root / "hub.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    hub = HowtoHub(f"http://127.0.0.1:{port}/", admin_token, proc)
    try:
        wait_for_http(hub.url + "hub/api/", timeout=60, proc=proc)
        wait_for_ok(hub.url + "services/binder/versions", timeout=60, proc=proc)
    except BaseException:
        stop_process(proc)
        print((root / "hub.log").read_text())
        raise
    yield hub
    stop_process(proc, timeout=20)


def user_token(hub: HowtoHub, user: str) -> str:
    [snippet] = [b.body for b in code_blocks(PAGE, "bash") if "/tokens" in b.body]
    output = hub.curl(snippet.replace("/users/alice/", f"/users/{user}/"))
    return json.loads(output)["token"]


@pytest.mark.hub
async def test_a_builder_gets_a_token_and_reaches_the_service(howto_hub: HowtoHub) -> None:
    token = user_token(howto_hub, "alice")
    [snippet] = [b.body for b in code_blocks(PAGE, "bash") if "$TOKEN" in b.body]
    assert json.loads(howto_hub.curl(snippet, TOKEN=token)) == {"builds": [], "next": None}
    # alice is in `builders`: her build request reaches the provider lookup (unknown: 404).
    stream = await read_events(
        howto_hub.url + "services/binder/build/nope/x?build_only=true",
        headers={"Authorization": f"token {token}"},
    )
    assert stream.events[-1]["status_code"] == 404


@pytest.mark.hub
async def test_adding_a_user_to_builders_lets_them_build(howto_hub: HowtoHub) -> None:
    token = user_token(howto_hub, "bob")
    url = howto_hub.url + "services/binder/build/nope/x?build_only=true"
    headers = {"Authorization": f"token {token}"}
    stream = await read_events(url, headers=headers)
    assert stream.events[-1]["status_code"] == 403, "bob is not a builder yet"
    [snippet] = [b.body for b in code_blocks(PAGE, "bash") if "/groups/builders/users" in b.body]
    howto_hub.curl(snippet)
    # The service caches a token's scopes (as the how-to says): a new token has them at once.
    headers = {"Authorization": f"token {user_token(howto_hub, 'bob')}"}
    stream = await read_events(url, headers=headers)
    assert stream.events[-1]["status_code"] == 404


@pytest.mark.hub
def test_the_public_routes_are_the_documented_ones(howto_hub: HowtoHub) -> None:
    base = howto_hub.url + "services/binder/"
    for route in ("health", "versions", "api/repoproviders"):
        with urllib.request.urlopen(base + route, timeout=30) as response:
            assert response.status == 200, route
    for route in ("api/v1/builds", "metrics"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + route, timeout=30)
        e.value.close()
        assert e.value.code == 403, route
