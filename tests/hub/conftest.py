"""Real JupyterHubs with binderhub-service as a managed service, started once per session.

A hub runs ``python -m jupyterhub`` with a generated config on free loopback
ports, the dummy authenticator and configurable-http-proxy from tests/js.

On the ``hub``, users ``alice`` and ``bob`` may build, ``carol`` may reach the
services but not build, ``dave`` may not reach them. It runs two services: the
service under test (``binder``) and ``binder-limited``, the same with a low
per-user request rate. The ``spawn-hook`` service holds the admin scope and is
the token of the spawner hook; the ``test-admin`` service creates user tokens
and groups. The services may read users' groups (``read:users:groups``), for
saved images shared with groups.

Each binderhub-service may list the hub's running servers (``list:users`` and
``read:servers``), as garbage collection needs.

The ``other_hub`` is a second, independent hub (its own database, cookie secret
and tokens) with builders ``alice`` (named like a user of the first hub) and
``mallory``, started only by the tests that need it.
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

from tests.conftest import (
    BUILD_IMAGE,
    LOOPBACK_NETWORKS,
    GitServer,
    Registry,
    free_port,
    stop_process,
    wait_for_http,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHP = REPO_ROOT / "tests" / "js" / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE = "binder"
LIMITED_SERVICE = "binder-limited"
USERS: dict[str, str | None] = {
    "alice": "builder",
    "bob": "builder",
    "carol": "viewer",
    "dave": None,
}
OTHER_USERS: dict[str, str | None] = {"alice": "builder", "mallory": "builder"}
MAX_BUILDS_PER_USER = 1
LIMITED_RATE_PER_MINUTE = 2


@dataclass
class Hub:
    """A running hub: its public URL, its services' ports, tokens by user."""

    url: str
    root: Path
    proc: subprocess.Popen
    admin_token: str
    hook_token: str
    service_ports: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def service_url(self) -> str:
        """The service under test, through the hub's proxy."""
        return self.url_of(SERVICE)

    def url_of(self, service: str) -> str:
        """A service's URL through the hub's proxy."""
        return f"{self.url}services/{service}/"

    def direct_url_of(self, service: str) -> str:
        """A service's URL on its own port, bypassing the proxy (same path prefix)."""
        return f"http://127.0.0.1:{self.service_ports[service]}/services/{service}/"

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

    def git_build_url(self, repo_url: str, ref: str, service_url: str | None = None) -> str:
        """The build URL of a git repository at ``service_url`` (default: through the proxy)."""
        spec = urllib.parse.quote(repo_url, safe="") + "/" + ref
        return f"{service_url or self.service_url}build/git/{spec}?build_only=true"

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


def hub_config(
    root: Path,
    port: int,
    admin_token: str,
    hook_token: str,
    users: dict[str, str | None],
    service_ports: dict[str, int],
    extra: str = "",
) -> str:
    """The hub's config: ``users`` by role, a managed binderhub-service per service port.

    Each service reads ``<name>_config.py`` in ``root``; every role that reaches
    one service reaches them all. The spawner hook builds through :data:`SERVICE`.
    The services' login tokens may start and read the user's own servers (launch
    links). ``extra`` is appended to the config.
    """
    scopes = [f"access:services!service={name}" for name in service_ports]
    services = [
        {
            "name": name,
            "url": f"http://127.0.0.1:{service_port}",
            "command": [
                sys.executable,
                "-m",
                "binderhub_service",
                "--config",
                str(root / f"{name}_config.py"),
            ],
            "environment": {"PYTHONPATH": str(REPO_ROOT)},
            "oauth_client_allowed_scopes": [
                "custom:binderhub-service:build",
                "custom:binderhub-service:admin",
                "servers!user",
                "read:servers!user",
            ],
            "oauth_no_confirm": True,
        }
        for name, service_port in service_ports.items()
    ]
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
        c.Authenticator.allowed_users = {set(users)!r}
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
        c.JupyterHub.services = {services!r} + [
            {{"name": "spawn-hook", "api_token": {hook_token!r}}},
            {{"name": "test-admin", "api_token": {admin_token!r}}},
        ]
        c.JupyterHub.load_roles = [
            {{
                "name": "binder-builders",
                "scopes": {[*scopes, "custom:binderhub-service:build"]!r},
                "users": {[u for u, r in users.items() if r == "builder"]!r},
            }},
            {{
                "name": "binder-viewers",
                "scopes": {scopes!r},
                "users": {[u for u, r in users.items() if r == "viewer"]!r},
            }},
            {{
                "name": "binder-spawn-hook",
                "scopes": {[*scopes, "custom:binderhub-service:admin"]!r},
                "services": ["spawn-hook"],
            }},
            {{
                "name": "binder-gc",
                "scopes": ["list:users", "read:servers"],
                "services": {list(service_ports)!r},
            }},
            {{
                "name": "test-admin",
                "scopes": ["admin:users", "admin:servers", "admin:groups", "tokens"],
                "services": ["test-admin"],
            }},
            {{
                "name": "binder-service",
                "scopes": ["read:users:groups"],
                "services": {list(service_ports)!r},
            }},
        ]
        """
    ) + textwrap.dedent(extra)


def service_config(
    registry: Registry, r2d_config: str, data_dir: Path, rate_limit_per_minute: int = 600
) -> str:
    """A service's config; the high default rate lets tests send many requests."""
    return textwrap.dedent(
        f"""\
        c.BinderHubService.data_dir = {str(data_dir)!r}
        c.DockerRegistry.url = {registry.url!r}
        c.LocalDockerExecutor.repo2docker_config_file = {r2d_config!r}
        c.LocalDockerExecutor.build_image = {BUILD_IMAGE!r}
        c.UserLimits.max_concurrent_builds_per_user = {MAX_BUILDS_PER_USER}
        c.UserLimits.rate_limit_per_minute = {rate_limit_per_minute}
        {LOOPBACK_NETWORKS}
        """
    )


def start_hub(
    root: Path,
    users: dict[str, str | None],
    service_configs: dict[str, str],
    extra_config: str = "",
) -> Hub:
    """Start a hub in ``root`` with ``users`` and a service per config (name to config text).

    ``extra_config`` is appended to the hub's config. Returns once the hub and
    every service answer, with a token for each user.
    """
    if not CHP.exists():
        pytest.fail("configurable-http-proxy is missing: run .ci/install-node-deps first.")
    port = free_port()
    admin_token, hook_token = secrets.token_hex(16), secrets.token_hex(16)
    service_ports = {name: free_port() for name in service_configs}
    config = hub_config(root, port, admin_token, hook_token, users, service_ports, extra_config)
    (root / "jupyterhub_config.py").write_text(config)
    for name, text in service_configs.items():
        (root / f"{name}_config.py").write_text(text)
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
    hub = Hub(
        url=f"http://127.0.0.1:{port}/",
        root=root,
        proc=proc,
        admin_token=admin_token,
        hook_token=hook_token,
        service_ports=service_ports,
    )
    try:
        wait_for_http(hub.url + "hub/api/", timeout=60, proc=proc)
        for name in service_configs:
            wait_for_ok(hub.url_of(name) + "versions", timeout=60, proc=proc)
        for user in users:
            token = hub.api("POST", f"users/{user}/tokens", {"note": "tests"})
            assert isinstance(token, dict)
            hub.tokens[user] = token["token"]
    except BaseException:
        stop_process(proc)
        print(hub.log())
        raise
    return hub


@pytest.fixture(scope="session")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Registry,
    git_server: GitServer,
    r2d_config: str,
    base_image: str,
) -> Iterator[Hub]:
    """A JupyterHub with binderhub-service as a managed service, and a token per user."""
    root = tmp_path_factory.mktemp("hub")
    configs = {
        SERVICE: service_config(registry, r2d_config, root / f"{SERVICE}-data"),
        LIMITED_SERVICE: service_config(
            registry, r2d_config, root / f"{LIMITED_SERVICE}-data", LIMITED_RATE_PER_MINUTE
        ),
    }
    hub = start_hub(root, USERS, configs)
    yield hub
    stop_process(hub.proc, timeout=20)


@pytest.fixture(scope="session")
def other_hub(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, r2d_config: str
) -> Iterator[Hub]:
    """A second, independent JupyterHub with its own binderhub-service, users and tokens."""
    root = tmp_path_factory.mktemp("other-hub")
    hub = start_hub(
        root, OTHER_USERS, {SERVICE: service_config(registry, r2d_config, root / "data")}
    )
    yield hub
    stop_process(hub.proc, timeout=20)
