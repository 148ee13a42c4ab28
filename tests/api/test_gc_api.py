"""``POST api/v1/gc`` in an in-process service (fake executor) with a real registry.

Images are small ones pushed with ``docker push`` to a registry with deletes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.api.conftest import Api, api_app, make_service
from tests.conftest import Registry, start_registry, stop_process
from tests.test_gc import manifest_status, push

pytestmark = pytest.mark.docker


@pytest.fixture
async def gc_api(tmp_path: Path) -> AsyncIterator[tuple[Api, Registry]]:
    root = tmp_path / "registry-root"
    root.mkdir()
    proc, registry = start_registry(root)
    db = f"sqlite+aiosqlite:///{tmp_path / 'api.sqlite'}"
    service = make_service(
        db,
        tmp_path,
        f"c.DockerRegistry.url = {registry.url!r}",
        f"c.BinderHubService.image_prefix = {registry.host + '/binder-'!r}",
        "c.GarbageCollector.unused_for_days = 0",
        "c.GarbageCollector.min_age_days = 0",
        "c.GarbageCollector.keep_last_per_repository = 0",
        "c.GarbageCollector.check_running_servers = False",
    )
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(api_app(service))
    server.add_sockets([sock])
    yield Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service), registry
    server.stop()
    await service.build_manager.shutdown()
    await service.stop_store()
    stop_process(proc)


def deleted_total() -> float:
    return REGISTRY.get_sample_value("binderhub_service_gc_images_deleted_total") or 0.0


async def test_admins_run_gc_and_the_service_forgets_deleted_images(
    gc_api: tuple[Api, Registry], tmp_path: Path
) -> None:
    api, registry = gc_api
    saved = push(registry, tmp_path, "binder-one:aaa")
    other = push(registry, tmp_path, "binder-two:bbb")
    status, _ = await api.call("POST", "images", {"name": "mine", "image": saved}, user="alice")
    assert status == 201
    assert await api.service.images.has_image(other)  # now cached as found

    status, body = await api.call("POST", "gc", user="alice")
    assert status == 403

    status, body = await api.call("POST", "gc?dry_run=true", user="root", admin=True)
    assert status == 200, body
    assert body["delete"] == [{"image": other, "reason": "unused for 0.0 days"}]
    assert body["keep"] == [{"image": saved, "reason": "saved by a user"}]
    assert (body["dry_run"], body["deleted"]) == (True, 0)
    assert manifest_status(registry, other) == 200

    before = deleted_total()
    status, body = await api.call("POST", "gc", user="root", admin=True)
    assert status == 200, body
    assert (body["dry_run"], body["deleted"]) == (False, 1)
    assert body["deleted_bytes"] > 0
    assert deleted_total() == before + 1
    assert REGISTRY.get_sample_value(
        "binderhub_service_gc_last_run_timestamp_seconds", {"outcome": "success"}
    )
    assert manifest_status(registry, other) == 404
    assert manifest_status(registry, saved) == 200
    assert not await api.service.images.has_image(other)


async def test_gc_without_a_registry_is_a_conflict(api: Api) -> None:
    status, body = await api.call("POST", "gc", user="root", admin=True)
    assert status == 409
    assert "no registry" in body["message"]
    status, body = await api.call("POST", "gc?dry_run=maybe", user="root", admin=True)
    assert status == 400


async def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def last_run() -> float:
    return (
        REGISTRY.get_sample_value(
            "binderhub_service_gc_last_run_timestamp_seconds", {"outcome": "success"}
        )
        or 0.0
    )


async def test_scheduled_runs_are_dry_runs_until_told_to_delete(
    gc_api: tuple[Api, Registry], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api, registry = gc_api
    caplog.set_level(logging.INFO)
    image = push(registry, tmp_path, "binder-scheduled:aaa")
    collector = api.service.gc_runner.collector
    assert collector.scheduled_dry_run is True
    assert api.service.start_gc_schedule() is None  # interval_hours is 0 by default

    before = last_run()
    collector.interval_hours = 0.01 / 3600
    task = api.service.start_gc_schedule()
    assert task is not None
    try:
        await wait_until(lambda: last_run() > before)
        await wait_until(lambda: "(dry run) would delete 1 image(s)" in caplog.text)
        assert manifest_status(registry, image) == 200
    finally:
        task.cancel()

    collector.scheduled_dry_run = False
    task = api.service.start_gc_schedule()
    assert task is not None
    try:
        await wait_until(lambda: manifest_status(registry, image) == 404)
        await wait_until(lambda: "Scheduled garbage collection deleted 1 image(s)" in caplog.text)
    finally:
        task.cancel()
