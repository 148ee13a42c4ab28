"""Restart safety: builds a previous run of the service left unfinished."""

from __future__ import annotations

import json
import logging
import time

from .builds import BuildManager
from .events import BuildEvent, failed
from .executors.base import BuildRequest
from .failures import FailureClass, hint
from .store import BuildRecorder, Store
from .store.models import BuildRecord

INTERRUPTED = "interrupted by service restart"


async def reconcile(
    store: Store, manager: BuildManager, recorder: BuildRecorder, push: bool, log: logging.Logger
) -> list[str]:
    """Settle every unfinished build record; return the ids of those marked failed.

    A running build whose executor outlives the service (build pods) is taken
    back: ``manager`` follows it again with its log so far. Any other
    unfinished record becomes ``failed`` with the reason "interrupted by
    service restart": its log keeps every event received and ends with a
    ``failed`` event saying so.
    """
    marked = []
    for record in await store.unfinished_builds():
        if manager.executor.can_reattach and record.state == "running":
            await adopt(store, manager, recorder, push, record)
            log.info("Build %s of %s reattached after restart", record.id, record.image_name)
            continue
        await mark_interrupted(store, record)
        marked.append(record.id)
        log.warning("Build %s of %s: %s", record.id, record.image_name, INTERRUPTED)
    return marked


async def adopt(
    store: Store, manager: BuildManager, recorder: BuildRecorder, push: bool, record: BuildRecord
) -> None:
    history = [BuildEvent.from_dict(json.loads(data)) async for _, data in store.events(record.id)]
    recorder.restore_phase_times(record.id, record.phase_times or {})
    request = BuildRequest(
        build_id=record.id,
        provider=record.provider,
        repo_url=record.repo_url,
        ref=record.ref,
        image_name=record.image_name,
        push=push,
        resume_after=await store.last_log_position(record.id),
    )
    manager.adopt(
        request,
        history=history,
        created=record.created,
        started=record.started,
        requester=record.requester,
        spec=record.spec,
    )


async def mark_interrupted(store: Store, record: BuildRecord) -> None:
    now = time.time()
    last = await store.last_event_number(record.id)
    event = failed(
        f"Build failed: {INTERRUPTED}",
        failure_class=FailureClass.INTERRUPTED.value,
        hint=hint(FailureClass.INTERRUPTED),
    )
    await store.write(
        events=[{"build_id": record.id, "number": last + 1, "data": event.to_json()}],
        updates=[
            {
                "id": record.id,
                "state": "failed",
                "failure_reason": INTERRUPTED,
                "failure_class": FailureClass.INTERRUPTED.value,
                "finished": now,
                "duration": now - record.started if record.started is not None else None,
            }
        ],
    )
