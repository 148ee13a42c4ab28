"""The BuildRecorder: writes what builds do to the Store, in batches.

It observes the BuildManager's builds (see :class:`~binderhub_service.builds.BuildObserver`)
without ever blocking them: events are buffered and written by a background
task every ``flush_interval`` seconds, or sooner when ``flush_max_events``
are waiting, each batch in one transaction. When a batch fails, each build's
share of it is written on its own: one build's bad row never blocks another
build, and a share the database refuses is logged and dropped, not retried.
Only when the database cannot be reached at all is the batch kept for later.

Build records are read back through the recorder (:meth:`BuildRecorder.get_build`,
:meth:`~BuildRecorder.list_builds`, :meth:`~BuildRecorder.events`): a read waits
until the changes it depends on that were buffered before it have been through
one write, which the background task then makes at once. Readers never write
themselves, and concurrent readers share one batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from traitlets import Float, Instance, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..auth import ANONYMOUS
from ..events import BuildEvent, ready
from ..states import BuildState
from .models import BuildRecord, build_row
from .store import BuildFilter, Store

if TYPE_CHECKING:
    from ..builds import Build


class BuildRecorder(LoggingConfigurable):
    """Records builds, their state and their complete logs in a :class:`Store`."""

    store = Instance(Store)
    executor_name = Unicode(help="Name of the executor builds run on, recorded with each build.")
    builder_version = Unicode(help="repo2docker version builds run with, recorded with each build.")

    flush_interval = Float(
        0.2,
        help="""Longest time, in seconds, that a build's new log events wait before they are
        written to the database. Default 0.2.""",
    ).tag(config=True)

    flush_max_events = Int(
        500,
        help="""Write buffered log events at once when this many wait, without waiting for
        ``flush_interval``. Default 500.""",
    ).tag(config=True)

    log_retention_days = Float(
        help="Days a finished build's log is kept (its record stays); 0 keeps logs forever."
    )

    purge_interval = Float(
        3600.0, help="Seconds between deletions of expired logs. Default 3600."
    ).tag(config=True)

    close_timeout = Float(
        30.0, help="Seconds to keep trying to write buffered changes when stopping. Default 30."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._new: dict[str, Build] = {}
        self._dirty: dict[str, Build] = {}
        self._events: list[dict[str, Any]] = []
        self._phase_times: dict[str, dict[str, float]] = {}
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        # Builds whose record the database refused: their later changes are not written.
        self._refused: set[str] = set()
        # Every buffered change takes the next number; each build keeps its last one.
        self._changes = 0
        self._last_change: dict[str, int] = {}
        # Changes up to `_written` are in the database. A failed write counts in
        # `_failures`, and `_failed` is the last change it held.
        self._written = 0
        self._failures = 0
        self._failed = 0
        self._attempted = asyncio.Condition()

    def start(self) -> None:
        """Start deleting expired logs now and every ``purge_interval`` seconds."""
        if self.log_retention_days > 0:
            self._purger = asyncio.create_task(self._purge_periodically(), name="log-purge")

    async def _purge_periodically(self) -> None:
        while True:
            try:
                await self.purge_expired_logs()
            except Exception:
                self.log.exception("Could not delete expired build logs")
            await asyncio.sleep(self.purge_interval)

    async def purge_expired_logs(self) -> int:
        """Delete logs of builds that finished more than ``log_retention_days`` ago."""
        cutoff = time.time() - self.log_retention_days * 86400
        deleted = await self.store.purge_logs(finished_before=cutoff)
        if deleted:
            self.log.info(
                "Deleted %d log events of builds older than %g days",
                deleted,
                self.log_retention_days,
            )
        return deleted

    def build_created(self, build: Build) -> None:
        self._new[build.id] = build
        self._phase_times[build.id] = {}
        self._changed(build.id)

    def event_appended(self, build: Build, number: int, event: BuildEvent) -> None:
        if build.id in self._refused:
            return
        self._events.append(
            {
                "build_id": build.id,
                "number": number,
                "data": event.to_json(),
                "log_position": event.log_position,
            }
        )
        if event.phase is not None:
            self._phase_times.setdefault(build.id, {}).setdefault(event.phase.value, time.time())
        self._changed(build.id)

    def state_changed(self, build: Build) -> None:
        if build.id in self._refused:
            return
        self._dirty[build.id] = build
        self._changed(build.id)

    def _changed(self, build_id: str) -> None:
        self._changes += 1
        self._last_change[build_id] = self._changes
        self._wake()

    def restore_phase_times(self, build_id: str, phase_times: dict[str, float]) -> None:
        """Keep the phase times a build taken back after a restart had recorded."""
        self._phase_times[build_id] = dict(phase_times)

    def _wake(self) -> None:
        if len(self._events) >= self.flush_max_events:
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="build-recorder")

    @property
    def pending(self) -> bool:
        return bool(self._new or self._dirty or self._events)

    async def _flush_soon(self) -> None:
        while self.pending:
            try:
                async with asyncio.timeout(self.flush_interval):
                    await self._full.wait()
            except TimeoutError:
                pass
            if not await self.flush():
                await asyncio.sleep(self.flush_interval)

    async def flush(self) -> bool:
        """Write everything buffered now, in one transaction; False if that failed."""
        async with self._lock:
            upto = self._changes
            written = False
            try:
                written = await self._write_buffered()
            finally:
                async with self._attempted:
                    if written:
                        self._written = max(self._written, upto)
                        self._last_change = {k: v for k, v in self._last_change.items() if v > upto}
                    else:
                        self._failures += 1
                        self._failed = upto
                    self._attempted.notify_all()
            return written

    async def written(self, build_id: str | None = None) -> None:
        """Return once the changes buffered so far (of one build, or of all) went through a write.

        The background task writes them at once rather than after ``flush_interval``.
        If that write fails (the database cannot be reached), this returns after the
        attempt: the caller's read then fails too, or sees the last stored state,
        and the changes stay buffered for the next write.
        """
        target = self._changes if build_id is None else self._last_change.get(build_id, 0)
        if target <= self._written:
            return
        failures = self._failures
        self._full.set()
        self._wake()
        async with self._attempted:
            await self._attempted.wait_for(
                lambda: (
                    self._written >= target
                    or (self._failures > failures and self._failed >= target)
                )
            )

    async def get_build(self, build_id: str, visible_to: str | None = None) -> BuildRecord | None:
        """The stored record of a build, with every change buffered before the call."""
        await self.written(build_id)
        return await self.store.get_build(build_id, visible_to)

    async def list_builds(
        self, where: BuildFilter, before: int | None = None, limit: int = 50
    ) -> list[BuildRecord]:
        """Stored records matching ``where``, newest first, with every change buffered so far."""
        await self.written()
        return await self.store.list_builds(where, before=before, limit=limit)

    async def latest_build(
        self, image_name: str, state: str, visible_to: str | None = None
    ) -> BuildRecord | None:
        """The newest record of a build of ``image_name`` in ``state``, as buffered so far."""
        await self.written()
        return await self.store.latest_build(image_name, state, visible_to)

    async def events(
        self, build_id: str, after: int = 0, page: int = 1000
    ) -> AsyncIterator[tuple[int, str]]:
        """A build's stored log from event ``after + 1``, with every event buffered so far."""
        await self.written(build_id)
        async for item in self.store.events(build_id, after=after, page=page):
            yield item

    async def add_requester(self, build_id: str, user: str) -> None:
        """Let ``user`` see a build they joined, once its record is stored."""
        await self.written(build_id)
        await self.store.add_requester(build_id, user)

    async def _write_buffered(self) -> bool:
        """One write of everything buffered (caller holds the lock); False if it failed."""
        new, dirty, events = self._new, self._dirty, self._events
        self._new, self._dirty, self._events = {}, {}, []
        self._full.clear()
        if not (new or dirty or events):
            return True
        new_rows = [self._row(b) for b in new.values()]
        updates = [self._row(b) for key, b in dirty.items() if key not in new]
        # Builds whose final state these rows hold need no phase times any more.
        ended = [row["id"] for row in (*new_rows, *updates) if row["finished"] is not None]
        try:
            await self.store.write(new_rows, events, updates)
        except Exception as e:
            if _unreachable(e) or not await self._write_each(new_rows, events, updates):
                self.log.warning("Could not record builds' changes (%s); retrying", e)
                self._new = {**new, **self._new}
                self._dirty = {**dirty, **self._dirty}
                self._events = events + self._events
                return False
        for build_id in ended:
            self._phase_times.pop(build_id, None)
        return True

    async def _write_each(
        self,
        new_rows: list[dict[str, Any]],
        events: list[dict[str, Any]],
        updates: list[dict[str, Any]],
    ) -> bool:
        """Write each build's share of a failed batch on its own transaction.

        A share the database refuses is logged and dropped. False (nothing
        dropped) when the database became unreachable: the caller keeps all.
        """
        shares: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
        for index, rows in enumerate((new_rows, events, updates)):
            for row in rows:
                build_id = row["id"] if index != 1 else row["build_id"]
                shares.setdefault(build_id, ([], [], []))[index].append(row)
        failed: list[tuple[str, BaseException]] = []
        for build_id, (new, build_events, build_updates) in shares.items():
            try:
                await self.store.write(new, build_events, build_updates)
            except Exception as e:
                if _unreachable(e):
                    return False
                failed.append((build_id, e))
                if new:
                    self._refused.add(build_id)
        for build_id, error in failed:
            self.log.error(
                "Dropped build %s's changes: the database refused them (%s)",
                build_id,
                type(error).__name__,
            )
        return True

    def snapshot(self, build: Build) -> BuildRecord:
        """The record of a build as it is now in memory (stored or not yet)."""
        return BuildRecord(seq=0, **self._row(build))

    def _row(self, build: Build) -> dict[str, Any]:
        request = build.request
        return build_row(
            id=build.id,
            requester=build.requester or ANONYMOUS,
            provider=request.provider,
            spec=build.spec,
            ref=request.ref,
            repo_url=request.repo_url,
            image_name=request.image_name,
            state=build.state.value,
            created=build.created,
            started=build.started,
            finished=build.finished,
            phase_times=dict(self._phase_times.get(build.id, {})),
            failure_reason=build.failure_reason,
            failure_class=build.failure_class.value if build.failure_class else None,
            executor=self.executor_name,
            builder_version=self.builder_version,
        )

    async def record_found_image(
        self,
        *,
        build_id: str,
        requester: str,
        provider: str,
        spec: str,
        repo_url: str,
        ref: str,
        image_name: str,
    ) -> None:
        """Record a request answered by an image that already existed: no build ran."""
        now = time.time()
        event = ready(image_name, "Done! Found built image")
        await self.store.write(
            [
                build_row(
                    id=build_id,
                    requester=requester,
                    provider=provider,
                    spec=spec,
                    ref=ref,
                    repo_url=repo_url,
                    image_name=image_name,
                    state=BuildState.SUCCEEDED.value,
                    created=now,
                    started=now,
                    finished=now,
                    phase_times={"ready": now},
                    failure_reason=None,
                    executor=self.executor_name,
                    builder_version=self.builder_version,
                )
            ],
            [{"build_id": build_id, "number": 1, "data": event.to_json()}],
        )

    async def close(self) -> None:
        """Write what is left (what the database accepts); call after the last build ended."""
        if self._purger is not None:
            self._purger.cancel()
            await asyncio.gather(self._purger, return_exceptions=True)
        self._full.set()
        if self._flusher is not None:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await asyncio.gather(self._flusher, return_exceptions=True)
            except TimeoutError:
                self._flusher.cancel()
                self.log.error("Could not record every build change before stopping")
        if self.pending:
            await self.flush()


def _unreachable(error: BaseException) -> bool:
    """Whether a write failed because the database could not be reached (worth retrying),
    rather than because it refused what was written."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error, OperationalError | InterfaceError | DisconnectionError | OSError | TimeoutError
    )
