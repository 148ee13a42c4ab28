"""Garbage collection keeps the images of running servers, asked of a real JupyterHub.

A hub of its own (with its own registry) runs the service; the spawner hook
builds the image a server starts with, and the service's own hub token (role
``list:users``, ``read:servers``) lists the running servers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from binderhub_service.hub_servers import IMAGE_OPTION
from tests.conftest import GitServer, Registry, start_registry, stop_process
from tests.repos import chatty_repo, hello_repo
from tests.sse import read_events
from tests.test_gc import manifest_status, push

from .conftest import SERVICE, Hub, service_config, start_hub
from .test_hub import spawn

pytestmark = [pytest.mark.hub, pytest.mark.docker]

GC_LINES = """
c.GarbageCollector.unused_for_days = 0
c.GarbageCollector.min_age_days = 0
c.GarbageCollector.keep_last_per_repository = 0
"""


@pytest.fixture(scope="module")
def gc_hub(
    tmp_path_factory: pytest.TempPathFactory, r2d_config: str, base_image: str
) -> Iterator[tuple[Hub, Registry]]:
    root = tmp_path_factory.mktemp("gc-hub")
    (root / "registry").mkdir()
    registry_proc, registry = start_registry(root / "registry")
    config = service_config(registry, r2d_config, root / "data") + GC_LINES
    try:
        hub = start_hub(root, {"alice": "builder"}, {SERVICE: config})
    except BaseException:
        stop_process(registry_proc)
        raise
    yield hub, registry
    stop_process(hub.proc, timeout=20)
    stop_process(registry_proc)


def run_gc(hub: Hub, dry_run: bool) -> dict:
    """``POST api/v1/gc`` as an admin of the service (the spawner hook's token)."""
    request = urllib.request.Request(
        hub.service_url + "api/v1/gc" + ("?dry_run=true" if dry_run else ""),
        method="POST",
        data=b"",
        headers={"Authorization": f"token {hub.hook_token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return {"status": e.code, **json.load(e)}


def stop_server(hub: Hub, user: str) -> None:
    """Stop ``user``'s server and wait until the hub lists it no more."""
    hub.api("DELETE", f"users/{user}/server")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = hub.api("GET", f"users/{user}")
        assert isinstance(model, dict)
        if not model["servers"]:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server of {user} did not stop")


async def test_the_image_of_a_running_server_is_kept_until_it_stops(
    gc_hub: tuple[Hub, Registry], git_server: GitServer, base_image: str, tmp_path: Path
) -> None:
    hub, registry = gc_hub
    idle = push(registry, tmp_path, "binder-idle:aaa")
    url, sha = git_server.make_repo("gc-running", hello_repo(base_image, "running"))
    server = await asyncio.to_thread(spawn, hub, "alice", {"repo": url, "ref": sha})
    assert "error" not in server, server
    image = (hub.root / "alice.image").read_text()
    assert server["user_options"][IMAGE_OPTION] == image
    try:
        report = await asyncio.to_thread(run_gc, hub, False)
        assert report["keep"] == [{"image": image, "reason": "a running server uses it"}], report
        assert report["delete"] == [{"image": idle, "reason": "unused for 0.0 days"}]
        assert manifest_status(registry, image) == 200
        assert manifest_status(registry, idle) == 404
    finally:
        await asyncio.to_thread(stop_server, hub, "alice")

    report = await asyncio.to_thread(run_gc, hub, True)
    assert [d["image"] for d in report["delete"]] == [image], report
    assert report["keep"] == []


async def test_after_a_deletion_the_next_request_builds_and_pushes_again(
    gc_hub: tuple[Hub, Registry], git_server: GitServer, base_image: str
) -> None:
    """The engine still holds the image; the service pushes it again all the same."""
    hub, registry = gc_hub
    url, sha = git_server.make_repo("gc-rebuild", hello_repo(base_image, "again"))
    build_url = hub.git_build_url(url, sha)
    first = await read_events(build_url, headers=hub.auth("alice"))
    assert first.phases[-1] == "ready", first.messages[-3:]
    image = first.events[-1]["imageName"]
    found = await read_events(build_url, headers=hub.auth("alice"))
    assert found.phases == ["ready"] and "Found built image" in found.messages[0]

    report = await asyncio.to_thread(run_gc, hub, False)
    assert {"image": image, "reason": "unused for 0.0 days"} in report["delete"], report
    assert manifest_status(registry, image) == 404
    assert (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )

    again = await read_events(build_url, headers=hub.auth("alice"))
    assert again.phases[-1] == "ready", again.messages[-3:]
    assert not any("Found built image" in m for m in again.messages)
    assert "pushing" in again.phases
    assert manifest_status(registry, image) == 200


def service_call(hub: Hub, method: str, path: str, body: object = None) -> dict:
    request = urllib.request.Request(
        hub.service_url + "api/v1/" + path,
        method=method,
        data=b"" if body is None else json.dumps(body).encode(),
        headers={**hub.auth("alice"), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


async def test_a_run_during_a_slow_build_of_the_image_keeps_it(
    gc_hub: tuple[Hub, Registry], git_server: GitServer, base_image: str, tmp_path: Path
) -> None:
    """An image in the registry while its build still runs (as between a build's
    push and its end) is kept; the build is then cancelled."""
    hub, registry = gc_hub
    url, sha = git_server.make_repo("gc-slow", chatty_repo(base_image, 100_000, 50, 0.2))
    record = await asyncio.to_thread(
        service_call, hub, "POST", "builds", {"repo_url": url, "ref": sha}
    )
    events_url = f"{hub.service_url}api/v1/builds/{record['id']}/events"
    try:
        started = await read_events(events_url, headers=hub.auth("alice"), stop_after=20)
        assert len(started.events) >= 20
        image = record["image_name"]
        push(registry, tmp_path, image.split("/", 1)[1])

        report = await asyncio.to_thread(run_gc, hub, False)
        assert {"image": image, "reason": "a build of it is running"} in report["keep"], report
        assert manifest_status(registry, image) == 200
    finally:
        await asyncio.to_thread(service_call, hub, "POST", f"builds/{record['id']}/cancel")
