"""Registry garbage collection against a real registry (CNCF distribution, deletes on).

Images are small ones pushed with ``docker push``; the dry run goes through a
recording proxy on loopback that counts the methods the registry receives.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from binderhub_service.gc import GarbageCollector
from binderhub_service.images import FoundImageCache
from binderhub_service.registry import DockerRegistry
from binderhub_service.store import Store

from .conftest import Registry, start_registry, stop_process
from .store.test_store import build_row

pytestmark = pytest.mark.docker

GC_CONFIG = {
    "GarbageCollector": {
        "unused_for_days": 0,
        "min_age_days": 0,
        "keep_last_per_repository": 0,
        "check_running_servers": False,
    }
}


def push(registry: Registry, tmp_path: Path, name: str) -> str:
    """Push a one-file image whose content is its name (so every digest differs)."""
    image = f"{registry.host}/{name}"
    root = tmp_path / name.replace("/", "_").replace(":", "_")
    root.mkdir()
    (root / "hello").write_text(name)
    tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True)
    subprocess.run(
        ["docker", "import", "-", image], input=tar.stdout, check=True, capture_output=True
    )
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", image], check=True, capture_output=True)
    return image


def manifest_status(registry: Registry, image: str) -> int:
    repository, _, tag = image.split("/", 1)[1].partition(":")
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    root = tmp_path / "registry-root"
    root.mkdir()
    proc, registry = start_registry(root)
    yield registry
    stop_process(proc)


def write_config(path: Path, registry: Registry, db: str, *lines: str) -> Path:
    """A service config whose collector deletes anything unprotected; no hub unless
    ``lines`` configure one."""
    hub = lines or ("c.GarbageCollector.check_running_servers = False",)
    path.write_text(
        f"c.DockerRegistry.url = {registry.url!r}\n"
        f"c.BinderHubService.db_url = {db!r}\n"
        f"c.BinderHubService.image_prefix = {registry.host + '/binder-'!r}\n"
        "c.GarbageCollector.unused_for_days = 0\n"
        "c.GarbageCollector.min_age_days = 0\n"
        "c.GarbageCollector.keep_last_per_repository = 0\n" + "\n".join(hub) + "\n"
    )
    return path


def run_gc(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binderhub_service", "gc", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")},
    )


async def saved_store(url: str, image: str) -> Store:
    store = Store(url)
    await store.open()
    await store.save_image(
        {"owner": "alice", "name": "mine", "image": image, "created": time.time()}
    )
    return store


def test_gc_command_deletes_the_unsaved_image_and_keeps_the_saved_one(
    own_registry: Registry, tmp_path: Path
) -> None:
    saved = push(own_registry, tmp_path, "binder-one:aaa")
    other = push(own_registry, tmp_path, "binder-two:bbb")
    unrelated = push(own_registry, tmp_path, "elsewhere:ccc")
    db = f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite'}"

    store = asyncio.run(saved_store(db, saved))
    asyncio.run(store.close())
    config = write_config(tmp_path / "config.py", own_registry, db)
    result = run_gc(config, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "delete": [{"image": other, "reason": "unused for 0.0 days"}],
        "keep": [{"image": saved, "reason": "saved by a user"}],
    }
    assert manifest_status(own_registry, other) == 404
    assert manifest_status(own_registry, saved) == 200
    assert manifest_status(own_registry, unrelated) == 200
    subprocess.run(["docker", "pull", "-q", saved], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", saved], check=True, capture_output=True)


class Recorder(web.RequestHandler):
    """Forwards every request to the registry and records its method."""

    SUPPORTED_METHODS = ("GET", "HEAD", "DELETE", "PUT", "POST", "PATCH")

    def initialize(self, upstream: str, methods: list[str]) -> None:
        self.upstream = upstream
        self.methods = methods

    async def _forward(self) -> None:
        self.methods.append(self.request.method or "")
        headers = {k: v for k, v in self.request.headers.items() if k.lower() != "host"}
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(
                self.upstream + self.request.uri,
                method=self.request.method or "GET",
                headers=headers,
                body=self.request.body if self.request.method in ("PUT", "POST", "PATCH") else None,
                allow_nonstandard_methods=True,
            ),
            raise_error=False,
        )
        self.set_status(response.code)
        for name in ("Content-Type", "Docker-Content-Digest", "Link"):
            if name in response.headers:
                self.set_header(name, response.headers[name])
        if self.request.method != "HEAD" and response.body:
            self.write(response.body)

    get = head = delete = put = post = patch = _forward


async def test_dry_run_sends_no_delete_and_forgets_nothing(
    own_registry: Registry, tmp_path: Path
) -> None:
    methods: list[str] = []
    sock, port = bind_unused_port()
    server = HTTPServer(
        web.Application([(r".*", Recorder, {"upstream": own_registry.url, "methods": methods})])
    )
    server.add_sockets([sock])
    image = push(own_registry, tmp_path, "binder-dry:aaa")
    proxied = image.replace(own_registry.host, f"127.0.0.1:{port}")
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'dry.sqlite'}")
    await store.open()
    try:
        collector = GarbageCollector(config=Config(GC_CONFIG))
        registry = DockerRegistry(url=f"http://127.0.0.1:{port}")
        report = await collector.collect(registry, store, f"127.0.0.1:{port}/binder-", dry_run=True)
        assert report.as_json()["delete"] == [{"image": proxied, "reason": "unused for 0.0 days"}]
        assert report.deleted == []
        assert "GET" in methods and "DELETE" not in methods
        assert manifest_status(own_registry, image) == 200

        # The same run for real deletes it and tells the found-image cache.
        cache = FoundImageCache(registry, 600)
        assert await cache.has_image(proxied)
        report = await collector.collect(
            registry, store, f"127.0.0.1:{port}/binder-", forget=cache.forget
        )
        assert report.deleted == [proxied]
        assert methods.count("DELETE") == 2  # the probe, then the image
        assert not await cache.has_image(proxied)
    finally:
        await store.close()
        server.stop()


def test_a_registry_that_does_not_delete_gives_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "no-delete").mkdir()
    proc, registry = start_registry(tmp_path / "no-delete", delete=False)
    try:
        image = push(registry, tmp_path, "binder-kept:aaa")
        db = f"sqlite+aiosqlite:///{tmp_path / 'nodelete.sqlite'}"
        result = run_gc(write_config(tmp_path / "config.py", registry, db))
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if "CRITICAL" in line]
        assert len(errors) == 1, result.stderr
        assert "does not delete images (it answered 405)" in errors[0]
        assert "nothing was deleted" in errors[0]
        assert "Traceback" not in result.stderr
        assert manifest_status(registry, image) == 200
    finally:
        stop_process(proc)


async def test_an_image_whose_build_is_running_is_kept(
    own_registry: Registry, tmp_path: Path
) -> None:
    image = push(own_registry, tmp_path, "binder-busy:aaa")
    idle = push(own_registry, tmp_path, "binder-idle:bbb")
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'busy.sqlite'}")
    await store.open()
    try:
        await store.write(new_builds=[build_row("busy", image_name=image, state="running")])
        collector = GarbageCollector(config=Config(GC_CONFIG))
        report = await collector.collect(
            DockerRegistry(url=own_registry.url), store, f"{own_registry.host}/binder-"
        )
    finally:
        await store.close()
    assert report.as_json()["keep"] == [{"image": image, "reason": "a build of it is running"}]
    assert report.deleted == [idle]
    assert manifest_status(own_registry, image) == 200
    assert manifest_status(own_registry, idle) == 404


def test_a_hub_that_does_not_answer_stops_the_run_before_any_delete(
    own_registry: Registry, tmp_path: Path
) -> None:
    image = push(own_registry, tmp_path, "binder-maybe:aaa")
    db = f"sqlite+aiosqlite:///{tmp_path / 'hubless.sqlite'}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    hub = f"http://127.0.0.1:{closed}/hub/api"
    config = write_config(
        tmp_path / "config.py",
        own_registry,
        db,
        f"c.GarbageCollector.hub_api_url = {hub!r}",
        "c.GarbageCollector.hub_api_token = 'not-a-real-token'",
    )
    for args in ((), ("--dry-run",)):
        result = run_gc(config, *args)
        assert result.returncode == 1, result.stdout
        errors = [line for line in result.stderr.splitlines() if "CRITICAL" in line]
        assert len(errors) == 1, result.stderr
        assert f"Cannot ask the hub at {hub} which images running servers use" in errors[0]
        assert "nothing was deleted" in errors[0]
        assert "not-a-real-token" not in result.stderr
    assert manifest_status(own_registry, image) == 200


def test_no_hub_configured_is_refused_unless_servers_are_not_checked(
    own_registry: Registry, tmp_path: Path
) -> None:
    image = push(own_registry, tmp_path, "binder-nohub:aaa")
    db = f"sqlite+aiosqlite:///{tmp_path / 'nohub.sqlite'}"
    config = write_config(tmp_path / "config.py", own_registry, db, "")
    result = run_gc(config)
    assert result.returncode == 1
    assert "check_running_servers = False" in result.stderr
    assert manifest_status(own_registry, image) == 200


async def test_images_asked_for_or_built_during_the_run_are_kept(
    own_registry: Registry, tmp_path: Path
) -> None:
    asked = push(own_registry, tmp_path, "binder-asked:aaa")
    built = push(own_registry, tmp_path, "binder-built:bbb")
    idle = push(own_registry, tmp_path, "binder-idle:ccc")
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'race.sqlite'}")
    await store.open()
    old = {"state": "succeeded", "created": 1000.0, "finished": 1001.0}
    await store.write(
        new_builds=[build_row(f"old-{n}", image_name=i, **old) for n, i in enumerate([asked, idle])]
    )

    async def meanwhile() -> None:
        """What arrives between the decisions and the deletes."""
        now = time.time()
        await store.write(
            new_builds=[
                build_row("found", image_name=asked, state="succeeded", created=now, finished=now),
                build_row("started", image_name=built, state="running", created=now),
            ]
        )

    try:
        collector = GarbageCollector(config=Config(GC_CONFIG))
        report = await collector.collect(
            DockerRegistry(url=own_registry.url),
            store,
            f"{own_registry.host}/binder-",
            before_delete=meanwhile,
        )
    finally:
        await store.close()
    assert report.as_json() == {
        "delete": [{"image": idle, "reason": "unused for 0.0 days"}],
        "keep": [
            {"image": asked, "reason": "asked for during the run"},
            {"image": built, "reason": "a build of it started during the run"},
        ],
    }
    assert report.deleted == [idle]
    assert manifest_status(own_registry, asked) == 200
    assert manifest_status(own_registry, built) == 200
    assert manifest_status(own_registry, idle) == 404
