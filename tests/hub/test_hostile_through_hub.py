"""A user with the build scope, through a real hub, cannot read the service's secrets
with a hostile repository."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import GitServer
from tests.repos import dockerfile
from tests.sse import read_events

from .conftest import SERVICE, Hub

pytestmark = [pytest.mark.hub, pytest.mark.docker]


def service_secrets(hub: Hub) -> dict[str, str]:
    """The secrets the hub gave the running service (read from its process, as root)."""
    config = f"{SERVICE}_config.py"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [part.decode(errors="replace") for part in cmdline]
        if "binderhub_service" not in args or not any(
            a.startswith(str(hub.root)) and a.endswith(config) for a in args
        ):
            continue
        env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        return {
            name: value
            for name, value in env.items()
            if name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID") or "SECRET" in name
        }
    raise AssertionError("the service's process was not found")


@pytest.mark.parametrize("linked", ["runtime.txt", "apt.txt"])
async def test_a_link_to_the_services_environment_leaks_no_hub_token(
    hub: Hub, git_server: GitServer, base_image: str, linked: str
) -> None:
    secrets = service_secrets(hub)
    assert secrets.get("JUPYTERHUB_API_TOKEN")
    name = f"hostile-through-hub-{linked.replace('.', '-')}"
    git_server.make_repo(name, {"Dockerfile": dockerfile(base_image, "echo built")})
    os.symlink("/proc/self/environ", git_server.root / "work" / name / linked)
    url, sha = git_server.make_repo(name, {})

    stream = await read_events(hub.git_build_url(url, sha), headers=hub.auth("alice"))

    assert stream.phases[-1] == "failed"
    assert "links must point inside the repository" in stream.messages[-1]
    request = urllib.request.Request(hub.service_url + "api/v1/builds", headers=hub.auth("alice"))
    with urllib.request.urlopen(request) as response:
        records = response.read().decode()
    seen = json.dumps(stream.events) + records
    for value in secrets.values():
        if len(value) >= 6:
            assert value not in seen
