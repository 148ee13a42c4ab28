"""A real JupyterHub configured from Zero to JupyterHub ``hub:`` values, for tests.

Zero to JupyterHub turns ``hub.services``, ``hub.loadRoles`` and ``hub.config``
into JupyterHub configuration (``apiToken`` becomes ``api_token``, each map key
a ``name``); :func:`jupyterhub_config` does the same, so the chart's NOTES
snippet is what configures the hub. Service URLs name cluster DNS names; the
test maps them to loopback (there is no cluster DNS here).
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
CHP = REPO_ROOT / "tests" / "js" / "node_modules" / ".bin" / "configurable-http-proxy"


def jupyterhub_config(hub_values: dict[str, Any]) -> dict[str, Any]:
    """``c.JupyterHub`` settings from Zero to JupyterHub's ``hub`` values, as its chart does."""
    hub = copy.deepcopy(hub_values)
    services = []
    for name, service in (hub.get("services") or {}).items():
        service.setdefault("name", name)
        if "apiToken" in service:
            service["api_token"] = service.pop("apiToken")
        services.append(service)
    roles = []
    for name, role in (hub.get("loadRoles") or {}).items():
        role.setdefault("name", name)
        roles.append(role)
    settings: dict[str, Any] = dict((hub.get("config") or {}).get("JupyterHub") or {})
    settings["services"] = services
    settings["load_roles"] = roles
    return settings


@dataclass
class RunningHub:
    """A hub on loopback: its URL, its API URL for services, and an admin token."""

    url: str
    api_url: str
    admin_token: str
    proc: subprocess.Popen[bytes]
    root: Path

    def log(self) -> str:
        return (self.root / "hub.log").read_text()

    def stop(self) -> None:
        """Stop the hub, and its proxy (in a session of its own) if the hub left it running."""
        stop_process(self.proc, timeout=20)
        pid_file = self.root / "jupyterhub-proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def wait_for_ok(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``url`` answers 200."""
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


def start_hub(root: Path, settings: dict[str, Any], users: list[str], hub_port: int) -> RunningHub:
    """Start JupyterHub with ``settings`` (``c.JupyterHub.<key>``) and the dummy authenticator.

    Its API listens on ``hub_port`` (services are told ``http://127.0.0.1:PORT/hub/api``).
    """
    if not CHP.exists():
        raise RuntimeError("configurable-http-proxy is missing: run .ci/install-node-deps first.")
    port = free_port()
    admin_token = secrets.token_hex(16)
    settings = copy.deepcopy(settings)
    settings["services"] = [
        *settings.get("services", []),
        {"name": "test-admin", "api_token": admin_token},
    ]
    settings["load_roles"] = [
        *settings.get("load_roles", []),
        {"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]},
    ]
    lines = [f"c.JupyterHub.{key} = {value!r}" for key, value in settings.items()]
    config = textwrap.dedent(
        f"""\
        c = get_config()  # noqa: F821
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {hub_port}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
        c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
        c.JupyterHub.db_url = "sqlite:///{root / "hub.sqlite"}"
        c.JupyterHub.cookie_secret_file = "{root / "cookie_secret"}"
        c.JupyterHub.pid_file = "{root / "hub.pid"}"
        c.ConfigurableHTTPProxy.pid_file = "{root / "jupyterhub-proxy.pid"}"
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allowed_users = {set(users)!r}
        """
    ) + "\n".join(lines)
    (root / "jupyterhub_config.py").write_text(config + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    with open(root / "hub.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    hub = RunningHub(
        url=f"http://127.0.0.1:{port}/",
        api_url=f"http://127.0.0.1:{hub_port}/hub/api",
        admin_token=admin_token,
        proc=proc,
        root=root,
    )
    try:
        wait_for_ok(hub.api_url + "/", timeout=60, proc=proc)
    except BaseException:
        hub.stop()
        print(hub.log())
        raise
    return hub
