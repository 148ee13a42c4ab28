"""Records stay writable whatever a build prints: in process (fake executor), on SQLite
and on a real PostgreSQL (which refuses NUL in text)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.api.conftest import Api, api_app, make_service
from tests.api.test_api import git, wait_state
from tests.conftest import POSTGRES_URL, empty_postgres
from tests.sse import read_events


async def test_nul_and_control_characters_are_stored_as_valid_text(api: Api) -> None:
    api.executor.failure_message = "python\x00x \x1b[31mred\r\nnext"
    status, record = await api.call("POST", "builds", git("will-fail-nul"), user="alice")
    assert status == 202
    failed = await wait_state(api, record["id"], "failed", user="alice")
    assert failed["failure_reason"] == "python\ufffdx \ufffd[31mred\nnext"
    stream = await read_events(
        f"{api.url}builds/{record['id']}/events", headers={"X-Test-User": "alice"}
    )
    assert stream.phases[-1] == "failed"
    assert "\x00" not in stream.events[-1]["message"]
    assert "python\ufffdx" in stream.events[-1]["message"]
    # Later builds are still recorded, and asking for one never fails.
    for i in range(3):
        status, later = await api.call("POST", "builds", git(f"after-nul-{i}"), user="bob")
        assert status == 202, later
        await wait_state(api, later["id"], "succeeded", user="bob")


@pytest.fixture
async def postgres_api(tmp_path: Path) -> Any:
    await empty_postgres(POSTGRES_URL)
    service = make_service(POSTGRES_URL, tmp_path)
    await service.start_store()
    sock, port = bind_unused_port()
    server = HTTPServer(api_app(service))
    server.add_sockets([sock])
    yield Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service)
    server.stop()
    await service.build_manager.shutdown()
    await service.stop_store()


@pytest.mark.postgres
async def test_a_row_the_database_refuses_blocks_no_other_build(postgres_api: Api) -> None:
    """A record PostgreSQL refuses (a ref longer than its column) is dropped with a log
    line; builds in the same batch and after it are recorded, and POST never fails."""
    api = postgres_api
    manager, recorder = api.service.build_manager, api.service.recorder
    recorder.flush_interval = 3600  # both builds go into one batch
    api.executor.pause = 0.05
    bad = manager.request_build(
        provider="git",
        repo_url="git://127.0.0.1:9/bad.git",
        ref="r" * 300,
        image_name="binder-bad:1",
        push=False,
        requester="mallory",
    )
    status, good = await api.call("POST", "builds", git("good-neighbour"), user="alice")
    # The record is not stored yet (the batch holds the bad row): the answer comes from memory.
    assert status == 202 and good["state"] == "running"
    assert await recorder.flush()
    assert await api.service.store.get_build(bad.id) is None
    assert await api.service.store.get_build(good["id"]) is not None
    recorder.flush_interval = 0.05
    await wait_state(api, good["id"], "succeeded", user="alice")
    while not bad.done:
        await asyncio.sleep(0.02)
    for i in range(3):
        status, later = await api.call("POST", "builds", git(f"later-{i}"), user="bob")
        assert status == 202, later
        await wait_state(api, later["id"], "succeeded", user="bob")
    assert not recorder.pending or await recorder.flush()
    assert await api.service.store.get_build(bad.id) is None


async def test_joiners_do_not_see_who_started_a_build(api: Api) -> None:
    _, first = await api.call("POST", "builds", git("gated-joined-by-bob"), user="alice")
    status, joined = await api.call("POST", "builds", git("gated-joined-by-bob"), user="bob")
    assert status == 202 and joined["id"] == first["id"]
    api.executor.gate.set()
    assert first["requester"] == "alice" and joined["requester"] is None
    done = await wait_state(api, first["id"], "succeeded", user="bob")
    assert done["requester"] is None
    _, listing = await api.call("GET", "builds", user="bob")
    assert [b["requester"] for b in listing["builds"] if b["id"] == first["id"]] == [None]
    stream = await read_events(
        f"{api.url}builds/{first['id']}/events", headers={"X-Test-User": "bob"}
    )
    assert "alice" not in json.dumps(stream.events)
    # The starter and admins still see it.
    assert (await api.call("GET", f"builds/{first['id']}", user="alice"))[1]["requester"] == "alice"
    admin_view = await api.call("GET", f"builds/{first['id']}", user="root", admin=True)
    assert admin_view[1]["requester"] == "alice"


async def test_saved_images_refuse_odd_names_and_descriptions(api: Api) -> None:
    for body in (
        {"name": "ok", "image": "bad image"},
        {"name": "ok", "image": "-leading-dash"},
        {"name": "ok", "image": "x" * 600},
        {"name": "ok", "image": "registry/x:1", "description": "nul\x00"},
        {"name": "ok", "image": "registry/x:1", "description": "x" * 5000},
        {"name": "../etc", "image": "registry/x:1"},
        {"name": "n" * 300, "image": "registry/x:1"},
        {"name": "ok", "build_id": "../../x"},
    ):
        status, answer = await api.call("POST", "images", body, user="alice")
        assert status == 400, (body, answer)
    for path in ("images/%00", "builds/%00", "builds/" + "x" * 300, "images/a?owner=%00"):
        status, _ = await api.call("GET", path, user="root", admin=True)
        assert status == 404, path
    for query in (
        "user=" + "u" * 2000,
        "repository=" + "r" * 2000,
        "since=" + "9" * 30,
    ):
        status, _ = await api.call("GET", f"builds?{query}", user="alice")
        assert status == 400, query
    status, _ = await api.call("GET", "builds?since=0001-01-01T00:00:00%2B14:00", user="alice")
    assert status in (200, 400)


async def test_a_finished_log_is_replayed_from_the_database_in_order(api: Api) -> None:
    manager = api.service.build_manager
    manager.finished_build_retention = 0
    manager.stream_chunk_bytes = 1024
    api.executor.lines = 1000
    _, record = await api.call("POST", "builds", git("replayed"), user="alice")
    await wait_state(api, record["id"], "succeeded", user="alice")
    while manager.get(record["id"]) is not None:
        await asyncio.sleep(0.01)
    url = f"{api.url}builds/{record['id']}/events"
    stream = await read_events(url, headers={"X-Test-User": "alice"})
    assert stream.ids == list(range(1, len(stream.events) + 1))
    assert len(stream.events) > 1000 and stream.phases[-1] == "ready"
    tail = await read_events(url, headers={"X-Test-User": "alice", "Last-Event-ID": "700"})
    assert tail.ids == list(range(701, len(stream.events) + 1))


@pytest.mark.postgres
async def test_shutdown_writes_what_the_database_accepts(tmp_path: Path) -> None:
    await empty_postgres(POSTGRES_URL)
    service = make_service(POSTGRES_URL, tmp_path, "c.BuildRecorder.flush_interval = 3600")
    await service.start_store()
    manager = service.build_manager
    builds = [
        manager.request_build(
            provider="git",
            repo_url=f"git://127.0.0.1:9/{name}.git",
            ref=ref,
            image_name=f"binder-{name}:1",
            push=False,
            requester="alice",
        )
        for name, ref in (("refused", "r" * 300), ("accepted", "a" * 40))
    ]
    while not all(b.done for b in builds):
        await asyncio.sleep(0.02)
    await manager.shutdown()
    await service.stop_store()
    await service.store.open()
    try:
        assert await service.store.get_build(builds[0].id) is None
        record = await service.store.get_build(builds[1].id)
        assert record is not None and record.state == "succeeded"
        assert [n async for n, _ in service.store.events(builds[1].id)][-1] > 3
    finally:
        await service.store.close()


async def test_reads_wait_for_the_changes_they_depend_on(api: Api) -> None:
    """With a write interval far longer than the test, a read still sees every change made
    before it: the read has the buffered changes written at once, it writes nothing itself."""
    recorder = api.service.recorder
    recorder.flush_interval = 3600
    status, record = await api.call("POST", "builds", git("hang-read-after-write"), user="alice")
    assert status == 202
    while not api.executor.runs:
        await asyncio.sleep(0.01)
    status, listed = await api.call("GET", "builds", user="alice")
    assert status == 200 and [b["id"] for b in listed["builds"]] == [record["id"]]
    assert not recorder.pending
    status, cancelled = await api.call("POST", f"builds/{record['id']}/cancel", user="alice")
    assert status == 200 and cancelled["state"] == "cancelled"
    status, stored = await api.call("GET", f"builds/{record['id']}", user="alice")
    assert stored["state"] == "cancelled"
    stored_log = [n async for n, _ in api.service.store.events(record["id"])]
    assert stored_log == list(range(1, len(stored_log) + 1)) and len(stored_log) > 1


async def test_a_read_while_the_database_is_unreachable_loses_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read waits for one write attempt only; the changes stay buffered until a write works."""
    store, recorder = api.service.store, api.service.recorder
    attempts: list[int] = []

    async def unreachable(*rows: Any) -> None:
        attempts.append(len(rows))
        raise OSError("connection refused")

    monkeypatch.setattr(store, "write", unreachable)
    status, record = await api.call("POST", "builds", git("while-unreachable"), user="alice")
    # The record is answered from memory, and nothing was dropped.
    assert status == 202 and record["requester"] == "alice"
    assert attempts and recorder.pending
    monkeypatch.undo()
    done = await wait_state(api, record["id"], "succeeded", user="alice")
    assert done["id"] == record["id"]
    stream = await read_events(
        f"{api.url}builds/{record['id']}/events", headers={"X-Test-User": "alice"}
    )
    assert stream.ids == list(range(1, len(stream.events) + 1))
    assert stream.phases[-1] == "ready"
