"""A real JupyterHub with binderhub-service as a managed service, started once per session.

The hub runs ``python -m jupyterhub`` with a generated config on free loopback
ports, the dummy authenticator and configurable-http-proxy from tests/js. Users
``alice`` and ``bob`` may build, ``carol`` may reach the service but not build,
``dave`` may not reach it. The ``spawn-hook`` service holds the admin scope and
is the token of the spawner hook; the ``test-admin`` service creates user tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import GitServer, Registry, free_port, stop_process, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]
CHP = REPO_ROOT / "tests" / "js" / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE = "binder"
USERS = {"alice": "builder", "bob": "builder", "carol": "viewer", "dave": None}
MAX_BUILDS_PER_USER = 1


@dataclass
class Hub:
    """A running hub: its public URL, the service's URL through it, tokens by user."""

    url: str
    root: Path
    proc: subprocess.Popen
    admin_token: str
    hook_token: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def service_url(self) -> str:
        return f"{self.url}services/{SERVICE}/"

    def api(self, method: str, path: str, body: object = None) -> object:
        request = urllib.request.Request(
            f"{self.url}hub/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            data = r.read()
        return json.loads(data) if data else None

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"token {self.tokens[user]}"}

    def git_build_url(self, repo_url: str, ref: str) -> str:
        spec = urllib.parse.quote(repo_url, safe="") + "/" + ref
        return f"{self.service_url}build/git/{spec}?build_only=true"

    def log(self) -> str:
        return (self.root / "hub.log").read_text()


def wait_for_ok(url: str, timeout: float, proc: subprocess.Popen) -> None:
    """Wait until ``url`` answers 200 (through the proxy, before the route exists, it 404s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


def hub_config(root: Path, port: int, admin_token: str, hook_token: str) -> str:
    service_port = free_port()
    scopes = ["access:services!service=binder"]
    return textwrap.dedent(
        f"""\
        from binderhub_service.spawner import BinderHubBuildHook

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
        c.Authenticator.allowed_users = {set(USERS)!r}
        c.JupyterHub.spawner_class = "recording_spawner.RecordingSpawner"
        c.RecordingSpawner.record_dir = "{root}"
        c.Spawner.pre_spawn_hook = BinderHubBuildHook(
            service_url="http://127.0.0.1:{port}/services/{SERVICE}/",
            api_token={hook_token!r},
        )
        c.JupyterHub.custom_scopes = {{
            "custom:binderhub-service:build": {{"description": "Build images"}},
            "custom:binderhub-service:admin": {{
                "description": "See and manage every user's builds",
            }},
        }}
        c.JupyterHub.services = [
            {{
                "name": "{SERVICE}",
                "url": "http://127.0.0.1:{service_port}",
                "command": [
                    {sys.executable!r}, "-m", "binderhub_service",
                    "--config", "{root / "service_config.py"}",
                ],
                "environment": {{"PYTHONPATH": {str(REPO_ROOT)!r}}},
                "oauth_client_allowed_scopes": [
                    "custom:binderhub-service:build", "custom:binderhub-service:admin",
                ],
                "oauth_no_confirm": True,
            }},
            {{"name": "spawn-hook", "api_token": {hook_token!r}}},
            {{"name": "test-admin", "api_token": {admin_token!r}}},
        ]
        c.JupyterHub.load_roles = [
            {{
                "name": "binder-builders",
                "scopes": {[*scopes, "custom:binderhub-service:build"]!r},
                "users": {[u for u, r in USERS.items() if r == "builder"]!r},
            }},
            {{
                "name": "binder-viewers",
                "scopes": {scopes!r},
                "users": {[u for u, r in USERS.items() if r == "viewer"]!r},
            }},
            {{
                "name": "binder-spawn-hook",
                "scopes": {[*scopes, "custom:binderhub-service:admin"]!r},
                "services": ["spawn-hook"],
            }},
            {{
                "name": "test-admin",
                "scopes": ["admin:users", "admin:servers", "tokens"],
                "services": ["test-admin"],
            }},
        ]
        """
    )


def service_config(registry: Registry, r2d_config: str) -> str:
    return textwrap.dedent(
        f"""\
        c.DockerRegistry.url = {registry.url!r}
        c.LocalDockerExecutor.repo2docker_config_file = {r2d_config!r}
        c.UserLimits.max_concurrent_builds_per_user = {MAX_BUILDS_PER_USER}
        c.UserLimits.rate_limit_per_minute = 600
        """
    )


@pytest.fixture(scope="session")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Registry,
    git_server: GitServer,
    r2d_config: str,
    base_image: str,
) -> Iterator[Hub]:
    """A JupyterHub with binderhub-service as a managed service, and a token per user."""
    if not CHP.exists():
        pytest.fail("configurable-http-proxy is missing: run .ci/install-node-deps first.")
    root = tmp_path_factory.mktemp("hub")
    port = free_port()
    admin_token, hook_token = secrets.token_hex(16), secrets.token_hex(16)
    (root / "jupyterhub_config.py").write_text(hub_config(root, port, admin_token, hook_token))
    (root / "service_config.py").write_text(service_config(registry, r2d_config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)])
    with open(root / "hub.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    hub = Hub(url=url, root=root, proc=proc, admin_token=admin_token, hook_token=hook_token)
    try:
        wait_for_http(url + "hub/api/", timeout=60, proc=proc)
        wait_for_ok(hub.service_url + "versions", timeout=60, proc=proc)
        for user in USERS:
            token = hub.api("POST", f"users/{user}/tokens", {"note": "tests"})
            assert isinstance(token, dict)
            hub.tokens[user] = token["token"]
    except BaseException:
        stop_process(proc)
        print(hub.log())
        raise
    yield hub
    stop_process(proc, timeout=20)
