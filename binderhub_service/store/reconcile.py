"""Restart safety: builds a previous run of the service left unfinished."""

from __future__ import annotations

import logging
import time

from ..events import failed
from .models import BuildRecord
from .store import Store

INTERRUPTED = "interrupted by service restart"


async def reconcile(store: Store, executor: object, log: logging.Logger) -> list[str]:
    """Settle every unfinished build record; return the ids of those marked failed.

    An executor with an ``async reattach(record) -> bool`` method (one whose
    builds outlive the service, such as build pods) may take a build back.
    Otherwise the record becomes ``failed`` with the reason
    "interrupted by service restart": its log keeps every event received and
    ends with a ``failed`` event saying so.
    """
    reattach = getattr(executor, "reattach", None)
    marked = []
    for record in await store.unfinished_builds():
        if reattach is not None and await reattach(record):
            log.info("Build %s reattached after restart", record.id)
            continue
        await mark_interrupted(store, record)
        marked.append(record.id)
        log.warning("Build %s of %s: %s", record.id, record.image_name, INTERRUPTED)
    return marked


async def mark_interrupted(store: Store, record: BuildRecord) -> None:
    now = time.time()
    last = await store.last_event_number(record.id)
    event = failed(f"Build failed: {INTERRUPTED}")
    await store.write(
        events=[{"build_id": record.id, "number": last + 1, "data": event.to_json()}],
        updates=[
            {
                "id": record.id,
                "state": "failed",
                "failure_reason": INTERRUPTED,
                "finished": now,
                "duration": now - record.started if record.started is not None else None,
            }
        ],
    )
