"""The store: migrations, queries, batched recording and restart reconciliation."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from sqlalchemy import insert, inspect

from binderhub_service.builds import BuildManager
from binderhub_service.events import BuildEvent, Phase
from binderhub_service.executors.base import BuildExecutor, BuildRequest, EmitFunc
from binderhub_service.failures import FailureClass, hint
from binderhub_service.restart import INTERRUPTED, reconcile
from binderhub_service.store import BuildFilter, BuildRecorder, Store
from binderhub_service.store.models import BuildLogEvent, BuildRecord
from tests.fakes import FakeExecutor

# The newest schema revision.
HEAD = "0005"


def build_row(build_id: str, **values: Any) -> dict[str, Any]:
    row = {
        "id": build_id,
        "requester": "alice",
        "provider": "git",
        "spec": "spec",
        "ref": "0" * 40,
        "repo_url": "git://127.0.0.1/repo.git",
        "image_name": "binder-repo:" + "0" * 40,
        "state": "running",
        "created": 1000.0,
        "started": 1001.0,
        "finished": None,
        "queue_wait": 1.0,
        "duration": None,
        "phase_times": {},
        "failure_reason": None,
        "executor": "fake",
        "builder_version": "1.0",
    }
    row.update(values)
    return row


def event_rows(build_id: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "build_id": build_id,
            "number": n,
            "data": BuildEvent(Phase.BUILDING, f"line {n}").to_json(),
        }
        for n in range(1, count + 1)
    ]


async def tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_from_empty(db_url: str) -> None:
    store = Store(db_url)
    await store.open()
    assert await store.revision() == HEAD
    assert {"builds", "build_events", "build_requesters", "saved_images"} <= await tables(store)
    await store.close()


async def test_upgrade_from_previous_revision_keeps_records(db_url: str) -> None:
    store = Store(db_url)
    await store.open(revision="0001")
    assert await store.revision() == "0001"
    assert "saved_images" not in await tables(store)
    async with store.engine.begin() as conn:
        await conn.execute(insert(BuildRecord), [build_row("old", requester="bob")])
        await conn.execute(insert(BuildLogEvent), event_rows("old", 3))
    await store.migrate("head")
    assert await store.revision() == HEAD
    # The build's starter, recorded before requesters had a table, may still see it.
    record = await store.get_build("old", visible_to="bob")
    assert record is not None and record.requester == "bob"
    assert await store.get_build("old", visible_to="alice") is None
    assert [n async for n, _ in store.events("old")] == [1, 2, 3]
    await store.downgrade("base")
    assert "builds" not in await tables(store)
    await store.migrate("head")
    assert await store.revision() == HEAD
    await store.close()


async def test_list_filters_and_pagination(store: Store) -> None:
    rows = [
        build_row(f"b{i}", requester="alice" if i % 2 else "bob", created=1000.0 + i)
        for i in range(7)
    ]
    rows[0]["state"] = "failed"
    rows[1]["repo_url"] = "git://127.0.0.1/other.git"
    await store.write(rows)
    everyone = await store.list_builds(BuildFilter(), limit=100)
    assert [r.id for r in everyone] == [f"b{i}" for i in reversed(range(7))]
    page1 = await store.list_builds(BuildFilter(), limit=3)
    page2 = await store.list_builds(BuildFilter(), before=page1[-1].seq, limit=3)
    page3 = await store.list_builds(BuildFilter(), before=page2[-1].seq, limit=3)
    assert [r.id for r in page1 + page2 + page3] == [r.id for r in everyone]
    alice = await store.list_builds(BuildFilter(visible_to="alice"))
    assert {r.id for r in alice} == {"b1", "b3", "b5"}
    assert [r.id for r in await store.list_builds(BuildFilter(states=["failed"]))] == ["b0"]
    other = BuildFilter(repo_url="git://127.0.0.1/other.git")
    assert [r.id for r in await store.list_builds(other)] == ["b1"]
    assert {r.id for r in await store.list_builds(BuildFilter(since=1005.0))} == {"b5", "b6"}
    by_bob = await store.list_builds(BuildFilter(requester="bob"))
    assert {r.id for r in by_bob} == {"b0", "b2", "b4", "b6"}
    await store.add_requester("b2", "alice")
    await store.add_requester("b2", "alice")
    assert "b2" in {r.id for r in await store.list_builds(BuildFilter(visible_to="alice"))}


async def test_purge_logs_keeps_records(store: Store) -> None:
    await store.write(
        [build_row("old", state="failed", finished=100.0), build_row("new")],
        event_rows("old", 5) + event_rows("new", 5),
    )
    assert await store.purge_logs(finished_before=200.0) == 5
    assert [n async for n, _ in store.events("old")] == []
    assert len([n async for n, _ in store.events("new")]) == 5
    assert await store.get_build("old") is not None


async def test_upgrade_gives_old_records_a_failure_class(db_url: str) -> None:
    store = Store(db_url)
    await store.open(revision="0004")
    old = build_row("x")
    rows = [
        {**old, "id": "cancelled", "state": "cancelled", "failure_reason": "cancelled"},
        {**old, "id": "restarted", "state": "failed", "failure_reason": INTERRUPTED},
        {
            **old,
            "id": "slow",
            "state": "failed",
            "failure_reason": "The build took longer than 60 seconds and was stopped.",
        },
        {**old, "id": "failed", "state": "failed", "failure_reason": "exit status 1"},
        {**old, "id": "fine", "state": "succeeded"},
    ]
    async with store.engine.begin() as conn:
        await conn.execute(insert(BuildRecord), rows)
    await store.migrate("head")
    classes = {r.id: r.failure_class for r in await store.list_builds(BuildFilter())}
    assert classes == {
        "cancelled": "cancelled",
        "restarted": "interrupted",
        "slow": "timeout",
        "failed": "unknown",
        "fine": None,
    }
    timeouts = await store.list_builds(BuildFilter(failure_classes=["timeout", "unknown"]))
    assert sorted(r.id for r in timeouts) == ["failed", "slow"]
    await store.downgrade("0004")
    assert await store.revision() == "0004"
    await store.close()


async def test_reconcile_marks_unfinished_builds_failed(store: Store) -> None:
    await store.write(
        [
            build_row("running"),
            build_row("queued", state="queued", started=None),
            build_row("done", state="succeeded", finished=1002.0),
        ],
        event_rows("running", 4),
    )
    recorder = BuildRecorder(store=store, executor_name="fake", builder_version="1.0")
    manager = BuildManager(executor=FakeExecutor())
    marked = await reconcile(store, manager, recorder, False, logging.getLogger("test"))
    assert sorted(marked) == ["queued", "running"]
    record = await store.get_build("running")
    assert record is not None
    assert (record.state, record.failure_reason) == ("failed", INTERRUPTED)
    events = [json.loads(data) async for _, data in store.events("running")]
    assert [e["message"] for e in events[:4]] == [f"line {n}\n" for n in range(1, 5)]
    assert events[4] == {
        "phase": "failed",
        "message": f"Build failed: {INTERRUPTED}\n",
        "failure_class": "interrupted",
        "hint": hint(FailureClass.INTERRUPTED),
    }
    assert record.failure_class == "interrupted"
    done = await store.get_build("done")
    assert done is not None and done.state == "succeeded"


class ReattachingExecutor(FakeExecutor):
    """A fake executor whose builds outlive the service, as build pods do."""

    can_reattach = True

    async def reattach(self, request: BuildRequest, emit: EmitFunc) -> None:
        self.runs.append(request)
        emit(BuildEvent(Phase.BUILDING, "line 3 again, and the rest"))


class ResumingExecutor(FakeExecutor):
    """A fake executor whose log lines carry positions, and that resumes after one."""

    can_reattach = True

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        for n in range(1, 4):
            emit(BuildEvent(Phase.BUILDING, f"line {n}", log_position=f"{n}:0"))
        emit(BuildEvent(Phase.BUILDING, "a report, from no log line"))
        await asyncio.Event().wait()

    async def reattach(self, request: BuildRequest, emit: EmitFunc) -> None:
        self.runs.append(request)
        start = int((request.resume_after or "0:0").split(":")[0]) + 1
        for n in range(start, 6):
            emit(BuildEvent(Phase.BUILDING, f"line {n}", log_position=f"{n}:0"))


async def test_a_reattached_build_resumes_after_its_last_stored_line(store: Store) -> None:
    """The recorder stores each event's log position; the restart resumes after the last one."""
    recorder = BuildRecorder(store=store, executor_name="fake", builder_version="1.0")
    executor = ResumingExecutor()
    manager = BuildManager(executor=executor, observers=[recorder])
    build = manager.request_build(
        provider="git", repo_url="git://x/r", ref="a" * 40, image_name="i:1", push=False
    )
    async with asyncio.timeout(5):
        while len(build.frames) < 5:
            await asyncio.sleep(0.01)
    await manager.shutdown()
    await recorder.close()
    assert await store.last_log_position(build.id) == "3:0"

    recorder = BuildRecorder(store=store, executor_name="fake", builder_version="1.0")
    manager = BuildManager(executor=executor, observers=[recorder])
    await reconcile(store, manager, recorder, False, logging.getLogger("test"))
    adopted = manager.get(build.id)
    assert adopted is not None
    [chunk async for chunk in adopted.stream(0, keepalive=5)]
    await recorder.close()
    assert [r.resume_after for r in executor.runs] == ["3:0"]
    stored = [json.loads(data)["message"] async for _, data in store.events(build.id)]
    lines = [message for message in stored if message.startswith("line")]
    assert lines == [f"line {n}\n" for n in range(1, 6)]
    # The position stays out of the wire form (the stored JSON is what replays send).
    assert not [data async for _, data in store.events(build.id) if "log_position" in data]


async def test_reconcile_reattaches_running_builds_when_the_executor_can(store: Store) -> None:
    await store.write(
        [build_row("pod"), build_row("queued", state="queued", started=None)],
        event_rows("pod", 3),
    )
    recorder = BuildRecorder(store=store, executor_name="fake", builder_version="1.0")
    executor = ReattachingExecutor()
    manager = BuildManager(executor=executor, observers=[recorder])

    marked = await reconcile(store, manager, recorder, False, logging.getLogger("test"))

    assert marked == ["queued"]
    build = manager.get("pod")
    assert build is not None
    live = [chunk async for chunk in build.stream(0, keepalive=5)]
    await recorder.close()
    assert [r.build_id for r in executor.runs] == ["pod"]
    record = await store.get_build("pod")
    assert record is not None and record.state == "succeeded"
    stored = [json.loads(data) async for _, data in store.events("pod")]
    assert [e["message"] for e in stored[:3]] == [f"line {n}\n" for n in range(1, 4)]
    assert "reconnected" in stored[3]["message"]
    assert stored[4]["message"] == "line 3 again, and the rest\n"
    assert [e.get("phase") for e in stored[-2:]] == ["built", "ready"]
    assert b"".join(live).count(b"id: ") == len(stored)


class ChattyExecutor(BuildExecutor):
    """Emits ``lines`` events as fast as it can, yielding to the loop every 100."""

    lines = 10_000

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        emit(BuildEvent(Phase.FETCHING, "Fetching"))
        for i in range(self.lines):
            emit(BuildEvent(Phase.BUILDING, f"step {i}: " + "x" * (i % 80)))
            if i % 100 == 0:
                await asyncio.sleep(0)


class CountingStore(Store):
    writes = 0

    async def write(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        await super().write(*args, **kwargs)


async def test_stored_log_equals_live_stream_for_10k_events(db_url: str) -> None:
    store = CountingStore(db_url)
    await store.open()
    recorder = BuildRecorder(store=store, executor_name="fake", builder_version="1.0")
    manager = BuildManager(executor=ChattyExecutor(), observers=[recorder])
    started = time.monotonic()
    build = manager.request_build(
        provider="git",
        repo_url="git://127.0.0.1/repo.git",
        ref="a" * 40,
        image_name="binder-repo:" + "a" * 40,
        push=False,
        requester="alice",
        spec="spec",
    )
    live = b"".join([chunk async for chunk in build.stream(0, keepalive=5)])
    elapsed = time.monotonic() - started
    await recorder.close()
    stored = b"".join(
        [f"id: {n}\ndata: {data}\n\n".encode() async for n, data in store.events(build.id)]
    )
    assert live.count(b"\n\n") >= 10_003
    assert stored == live
    record = await store.get_build(build.id)
    assert record is not None
    assert record.state == "succeeded"
    assert set(record.phase_times) == {"waiting", "fetching", "building", "built", "ready"}
    assert record.duration is not None and record.queue_wait is not None
    # Batched: far fewer transactions than events, and the build was not held up.
    assert store.writes < 100
    assert elapsed < 10
    await store.close()
