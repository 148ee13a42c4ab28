"""Builds and the manager that runs them.

A :class:`Build` is a state machine with an append-only, numbered event log:
every subscriber reads the log from any offset, so late joiners and
reconnecting clients miss nothing, and a slow subscriber only ever slows
itself. Each log is bounded (:class:`LogLimits`): events past the cap are
dropped and counted after one event that says so, long lines are cut, and
subscribers read it in bounded chunks. :class:`BuildManager` deduplicates
builds by image name, queues them behind a global concurrency limit, applies
the timeout, tries a build again once when it failed for a reason that looks
temporary (see :mod:`binderhub_service.failures`), and forgets finished builds
after a retention period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from traitlets import Float, Instance, Int, List
from traitlets.config import LoggingConfigurable

from .errors import BuildFailed
from .events import KEEPALIVE_FRAME, BuildEvent, Phase, failed, ready, sse_frame
from .executors.base import BuildExecutor, BuildRequest
from .failures import FailureClass, hint
from .metrics import (
    BUILD_COUNT,
    BUILD_QUEUE_LENGTH,
    BUILD_RETRIES,
    BUILD_TIME,
    BUILDS_IN_PROGRESS,
    BuildStatus,
)
from .redact import Redactor
from .states import BuildState
from .text import clean_text, clean_value

# Events that still reach the log after it was truncated: how the build ended.
KEPT_AFTER_TRUNCATION = (Phase.BUILT, Phase.READY, Phase.FAILED)


@dataclasses.dataclass(frozen=True)
class LogLimits:
    """Bounds on one build's log, and on what one subscriber reads at a time."""

    max_events: int = 100_000
    max_bytes: int = 32 * 1024 * 1024
    max_line_length: int = 8192
    chunk_bytes: int = 64 * 1024


def cut(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters, saying how many were left out."""
    if length <= 0 or len(text) <= length:
        return text
    return f"{text[:length]}... ({len(text) - length} more characters)\n"


class BuildObserver(Protocol):
    """Told about every build's life as it happens (e.g. to record it).

    Called synchronously from the event loop: an observer must not block.
    """

    def build_created(self, build: Build) -> None: ...

    def event_appended(self, build: Build, number: int, event: BuildEvent) -> None: ...

    def state_changed(self, build: Build) -> None: ...


class Build:
    """One build: its request, its state and its numbered event log.

    Events are cleaned (control characters replaced, secrets redacted, long
    lines cut) and serialised once, when appended; event ``n`` (1-based) is
    the SSE frame at index ``n - 1``. When the log reaches its limits, one
    event says it was truncated and later lines are dropped (and counted in
    ``dropped_events``); the events that end the build are always kept.
    Observers hear of its creation, of every event and of every change of state.
    """

    def __init__(
        self,
        request: BuildRequest,
        requester: str | None = None,
        spec: str = "",
        observers: Sequence[BuildObserver] = (),
        limit_key: str | None = None,
        history: Sequence[BuildEvent] = (),
        limits: LogLimits | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.request = request
        self.requester = requester
        # What per-user limits count this build against (the user, or a client address).
        self.limit_key = limit_key or requester
        self.spec = spec
        self.observers = tuple(observers)
        self._state = BuildState.QUEUED
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.failure_reason: str | None = None
        self.failure_class: FailureClass | None = None
        self.limits = limits or LogLimits()
        self.redact = redact
        # A build taken back after a restart starts with the log already recorded.
        self.frames: list[bytes] = [sse_frame(n, e) for n, e in enumerate(history, start=1)]
        self.log_bytes = sum(map(len, self.frames))
        self.truncated = False
        self.dropped_events = 0
        self._appended = asyncio.get_running_loop().create_future()
        if not history:
            for observer in self.observers:
                observer.build_created(self)

    @property
    def state(self) -> BuildState:
        return self._state

    @state.setter
    def state(self, state: BuildState) -> None:
        self._state = state
        for observer in self.observers:
            observer.state_changed(self)

    @property
    def id(self) -> str:
        return self.request.build_id

    @property
    def image_name(self) -> str:
        return self.request.image_name

    @property
    def done(self) -> bool:
        return self.state.is_final

    def clean(self, event: BuildEvent) -> BuildEvent:
        """``event`` as it may be stored and sent: valid text, no secret, no overlong line."""
        message = cut(self.redact(clean_text(event.message)), self.limits.max_line_length)
        if message == event.message and not event.extra:
            return event
        return dataclasses.replace(event, message=message, extra=clean_value(event.extra))

    def append(self, event: BuildEvent) -> None:
        """Add an event to the log and wake every subscriber. Never blocks.

        Past the log's limits only the events that end the build are kept.
        """
        if self.frames and self.done:
            raise RuntimeError(f"build {self.id} already ended")
        if self.truncated and event.phase not in KEPT_AFTER_TRUNCATION:
            self.dropped_events += 1
            return
        event = self.clean(event)
        frame = sse_frame(len(self.frames) + 1, event)
        limits = self.limits
        if event.phase not in KEPT_AFTER_TRUNCATION and (
            len(self.frames) + 1 >= limits.max_events
            or self.log_bytes + len(frame) > limits.max_bytes
        ):
            self.truncated = True
            self.dropped_events += 1
            event = BuildEvent(
                None,
                f"Log truncated: this build's log reached its limit of {limits.max_events} "
                f"lines or {limits.max_bytes} bytes; further lines are not shown.",
                extra={"truncated": True},
            )
            frame = sse_frame(len(self.frames) + 1, event)
        self._add(frame, event)

    def _add(self, frame: bytes, event: BuildEvent) -> None:
        self.frames.append(frame)
        self.log_bytes += len(frame)
        number = len(self.frames)
        for observer in self.observers:
            observer.event_appended(self, number, event)
        waiter, self._appended = self._appended, asyncio.get_running_loop().create_future()
        waiter.set_result(None)

    def _chunk_end(self, offset: int, end: int) -> int:
        """Where a chunk from ``offset`` ends: at most ``chunk_bytes``, at least one frame."""
        size = len(self.frames[offset])
        stop = offset + 1
        while stop < end and size + len(self.frames[stop]) <= self.limits.chunk_bytes:
            size += len(self.frames[stop])
            stop += 1
        return stop

    async def stream(self, offset: int = 0, keepalive: float = 25.0) -> AsyncIterator[bytes]:
        """Yield the log's frames from ``offset`` (a count of events already seen).

        Each chunk holds the frames available at that moment, at most
        ``limits.chunk_bytes`` of them (a single larger frame goes alone), so a
        subscriber that waits for its client between chunks holds one chunk at
        most; a keepalive comment is yielded after ``keepalive`` seconds
        without events. Ends after the final event.
        """
        offset = max(0, offset)
        while True:
            end = len(self.frames)
            if offset < end:
                stop = self._chunk_end(offset, end)
                chunk = b"".join(self.frames[offset:stop])
                offset = stop
                yield chunk
                continue
            if self.done:
                return
            try:
                async with asyncio.timeout(keepalive):
                    await asyncio.shield(self._appended)
            except TimeoutError:
                yield KEEPALIVE_FRAME


class BuildManager(LoggingConfigurable):
    """Starts, deduplicates, queues, times out, cancels and remembers builds.

    Handlers ask it for a build of an image; they never talk to an executor.
    """

    executor = Instance(BuildExecutor)

    max_concurrent_builds = Int(
        4,
        help="""Builds that may run at once; further builds wait in a FIFO queue and their
        streams report their position. Default 4.""",
    ).tag(config=True)

    build_timeout = Float(
        3600.0,
        help="Seconds a build may run before it is stopped and reported failed. Default 3600.",
    ).tag(config=True)

    finished_build_retention = Float(
        600.0,
        help="""Seconds a finished build's event log stays in memory, so that clients can
        reconnect (``Last-Event-ID``) and replay it. Default 600.""",
    ).tag(config=True)

    max_log_events = Int(
        100_000,
        help="""Most events one build's log holds, in memory and in the database. At the limit
        one event says the log was truncated; the build goes on, its further lines are
        dropped (and counted in the service's log), and how it ends is still reported.
        Default 100000; e.g. 20000 for small services.""",
    ).tag(config=True)

    max_log_bytes = Int(
        32 * 1024 * 1024,
        help="""Most bytes (of serialised events) one build's log holds, in memory and in the
        database; reaching it truncates the log like ``max_log_events``. Default 33554432
        (32 MiB); e.g. ``8 * 1024 * 1024``.""",
    ).tag(config=True)

    max_log_line_length = Int(
        8192,
        help="""Most characters of one log line; longer lines are cut and say how much was
        left out. Default 8192; 0 keeps lines whole (the log limits still apply).""",
    ).tag(config=True)

    stream_chunk_bytes = Int(
        64 * 1024,
        help="""Most bytes of log written to one event-stream client at a time; the next
        chunk waits until the client has taken this one, so a slow or idle reader holds
        no more than this (and its socket buffer). Default 65536 (64 KiB).""",
    ).tag(config=True)

    stream_write_timeout = Float(
        300.0,
        help="""Seconds an event-stream client may take to accept one chunk of the log before
        the service closes its connection (a client that stops reading holds a connection
        and a chunk until then). Default 300; 0 waits forever.""",
    ).tag(config=True)

    transient_failure_retries = Int(
        1,
        help="""Times a build is tried again, automatically, after it failed for a reason that
        looks temporary: the container engine or the registry could not be reached, or the
        push was interrupted. Failures the repository causes are never tried again. Each
        try says so in the build's log and the service's. Default 1; 0 never tries again.""",
    ).tag(config=True)

    transient_failure_retry_delay = Float(
        5.0,
        help="""Seconds to wait before trying a build again after a temporary failure (see
        ``transient_failure_retries``). Default 5.""",
    ).tag(config=True)

    redactor = Instance(
        Redactor,
        args=(),
        help="Known secret values, replaced by ``***`` in events and failure reasons.",
    )

    observers: List[BuildObserver] = List(
        help="BuildObservers every new build reports to (e.g. the store's recorder)."
    )

    @property
    def log_limits(self) -> LogLimits:
        return LogLimits(
            max_events=self.max_log_events,
            max_bytes=self.max_log_bytes,
            max_line_length=self.max_log_line_length,
            chunk_bytes=self.stream_chunk_bytes,
        )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._builds: dict[str, Build] = {}
        self._queue: deque[Build] = deque()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = 0
        # Set by shutdown: "detach" leaves builds running, "stop" stops them.
        self._stopping: str | None = None

    def find(self, image_name: str) -> Build | None:
        """The build in memory (running, queued or recently finished) for an image."""
        return self._builds.get(image_name)

    def get(self, build_id: str) -> Build | None:
        for build in self._builds.values():
            if build.id == build_id:
                return build
        return None

    def count_unfinished(self, limit_key: str) -> int:
        """How many builds started under ``limit_key`` are queued or running."""
        return sum(1 for b in self._builds.values() if b.limit_key == limit_key and not b.done)

    def request_build(
        self,
        *,
        provider: str,
        repo_url: str,
        ref: str,
        image_name: str,
        push: bool,
        requester: str | None = None,
        limit_key: str | None = None,
        spec: str = "",
        content_providers: tuple[str, ...] = (),
        git_credential: str | None = None,
    ) -> Build:
        """The build of ``image_name``: the one already queued or running, or a new one."""
        existing = self._builds.get(image_name)
        if existing is not None and not existing.done:
            return existing
        request = BuildRequest(
            build_id=uuid.uuid4().hex,
            provider=provider,
            repo_url=repo_url,
            ref=ref,
            image_name=image_name,
            push=push,
            content_providers=content_providers,
            git_credential=git_credential,
        )
        self.redactor.add_git_credential(git_credential)
        build = Build(
            request,
            requester=requester,
            spec=spec,
            observers=self.observers,
            limit_key=limit_key,
            limits=self.log_limits,
            redact=self.redactor,
        )
        self._builds[image_name] = build
        if self._running < self.max_concurrent_builds:
            build.append(BuildEvent(Phase.WAITING, "Waiting for build to start..."))
            self._start(build)
        else:
            self._queue.append(build)
            BUILD_QUEUE_LENGTH.set(len(self._queue))
            self._announce_position(build, len(self._queue))
        return build

    def _announce_position(self, build: Build, position: int) -> None:
        build.append(
            BuildEvent(
                Phase.WAITING,
                f"Waiting for a free build slot: position {position} in the queue.",
                extra={"queue_position": position},
            )
        )

    def adopt(
        self,
        request: BuildRequest,
        *,
        history: Sequence[BuildEvent],
        created: float,
        started: float | None,
        requester: str | None = None,
        spec: str = "",
    ) -> Build:
        """Follow a build an earlier run of the service started, where the executor can.

        The build keeps its id and its log so far; the executor's log
        continues after the last line recorded (``request.resume_after``),
        after a line that says the service reconnected.
        """
        build = Build(
            request,
            requester=requester,
            spec=spec,
            observers=self.observers,
            history=history,
            limits=self.log_limits,
            redact=self.redactor,
        )
        build.created = created
        self._builds[request.image_name] = build
        self._start(build, follow_existing=True)
        build.started = started or build.started
        build.append(
            BuildEvent(
                Phase.UNKNOWN,
                "The service restarted and reconnected to this build; its log continues.",
            )
        )
        return build

    def _start(self, build: Build, follow_existing: bool = False) -> None:
        self._running += 1
        BUILDS_IN_PROGRESS.set(self._running)
        build.state = BuildState.RUNNING
        build.started = time.time()
        self._tasks[build.id] = asyncio.create_task(
            self._run(build, follow_existing), name=f"build-{build.id}"
        )

    async def _attempt(self, build: Build, follow_existing: bool) -> None:
        """Run the build, and again (up to ``transient_failure_retries`` times) while it
        fails for a reason that looks temporary."""
        step = self.executor.reattach if follow_existing else self.executor.run
        retry = 0
        while True:
            try:
                await step(build.request, build.append)
                return
            except BuildFailed as e:
                if retry >= self.transient_failure_retries or not e.failure_class.transient:
                    raise
                retry += 1
                self.log.warning(
                    "Build %s failed (%s: %s); trying it again (%d of %d)",
                    build.id,
                    e.failure_class.value,
                    self.redactor(e.message),
                    retry,
                    self.transient_failure_retries,
                )
                BUILD_RETRIES.labels(failure_class=e.failure_class.value).inc()
                build.append(
                    BuildEvent(
                        Phase.WAITING,
                        f"{e.message.rstrip('.')}. This looks temporary ({e.failure_class}): "
                        f"trying the build again in {self.transient_failure_retry_delay:g} "
                        f"seconds ({retry} of {self.transient_failure_retries}).",
                        extra={"retry": retry, "failure_class": e.failure_class.value},
                    )
                )
                await asyncio.sleep(self.transient_failure_retry_delay)
                # A build taken back after a restart starts afresh when tried again.
                step = self.executor.run

    async def _run(self, build: Build, follow_existing: bool = False) -> None:
        status = BuildStatus.FAILURE
        try:
            async with asyncio.timeout(self.build_timeout):
                await self._attempt(build, follow_existing)
        except TimeoutError:
            status = BuildStatus.TIMEOUT
            self._finish(
                build,
                BuildState.FAILED,
                f"The build took longer than {self.build_timeout:g} seconds and was stopped.",
                FailureClass.TIMEOUT,
            )
        except asyncio.CancelledError:
            if self._stopping == "detach":
                # The build goes on without us; the next start takes it back.
                self.log.info("Build %s left running for the next start", build.id)
                return
            if self._stopping == "stop":
                self._finish(
                    build,
                    BuildState.FAILED,
                    "The service shut down while the build ran; ask for it again.",
                    FailureClass.INTERRUPTED,
                )
            else:
                status = BuildStatus.CANCELLED
                self._finish(
                    build, BuildState.CANCELLED, "The build was cancelled.", FailureClass.CANCELLED
                )
        except BuildFailed as e:
            self._finish(build, BuildState.FAILED, e.message, e.failure_class)
        except Exception:
            self.log.exception("Build %s failed with an unexpected error", build.id)
            self._finish(
                build,
                BuildState.FAILED,
                f"An internal error stopped the build; the service's log has details "
                f"(build {build.id}).",
                FailureClass.UNKNOWN,
            )
        else:
            status = BuildStatus.SUCCESS
            build.append(BuildEvent(Phase.BUILT, "Built image.", image_name=build.image_name))
            build.append(ready(build.image_name, "Done! Image built"))
            build.state = BuildState.SUCCEEDED
            build.finished = time.time()
        finally:
            self._tasks.pop(build.id, None)
            self._running -= 1
            BUILDS_IN_PROGRESS.set(self._running)
            if build.dropped_events:
                self.log.info(
                    "Build %s: %d log events dropped past the log's limits",
                    build.id,
                    build.dropped_events,
                )
            if build.done:
                assert build.started is not None
                BUILD_TIME.labels(status=status.value).observe(time.time() - build.started)
                BUILD_COUNT.labels(
                    status=status.value,
                    provider=build.request.provider,
                    failure_class=build.failure_class.value if build.failure_class else "",
                ).inc()
            self._forget_later(build)
            self._start_next()

    def _finish(
        self, build: Build, state: BuildState, reason: str, failure_class: FailureClass
    ) -> None:
        reason = cut(self.redactor(clean_text(reason)), self.max_log_line_length).strip()
        build.failure_reason = reason
        build.failure_class = failure_class
        build.append(
            failed(
                f"Build failed: {reason}" if state is BuildState.FAILED else reason,
                failure_class=failure_class.value,
                hint=hint(failure_class, self.executor.memory_limit()),
            )
        )
        build.state = state
        build.finished = time.time()
        self.log.info(
            "Build %s of %s ended (%s): %s", build.id, build.image_name, failure_class, reason
        )

    def _start_next(self) -> None:
        while self._queue and self._running < self.max_concurrent_builds:
            self._start(self._queue.popleft())
        BUILD_QUEUE_LENGTH.set(len(self._queue))
        for position, waiting in enumerate(self._queue, start=1):
            self._announce_position(waiting, position)

    def _forget_later(self, build: Build) -> None:
        def forget() -> None:
            if self._builds.get(build.image_name) is build:
                del self._builds[build.image_name]

        asyncio.get_running_loop().call_later(self.finished_build_retention, forget)

    def cancel(self, build: Build) -> bool:
        """Cancel a queued or running build; False when it had already ended."""
        if build.done:
            return False
        if build in self._queue:
            self._queue.remove(build)
            BUILD_QUEUE_LENGTH.set(len(self._queue))
            self._finish(
                build, BuildState.CANCELLED, "The build was cancelled.", FailureClass.CANCELLED
            )
            BUILD_COUNT.labels(
                status=BuildStatus.CANCELLED.value,
                provider=build.request.provider,
                failure_class=FailureClass.CANCELLED.value,
            ).inc()
            self._forget_later(build)
            return True
        task = self._tasks.get(build.id)
        if task is not None:
            task.cancel()
        return True

    async def shutdown(self) -> None:
        """Stop following builds, and wait until their executors have cleaned up.

        Builds that outlive the service (``executor.can_reattach``) are left
        running, recorded as running, for the next start to take back; others
        are stopped and recorded as failed because of the shutdown.
        """
        if self.executor.can_reattach:
            self._stopping = "detach"
            self.executor.detach()
        else:
            self._stopping = "stop"
        for build in list(self._queue):
            self.cancel(build)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
