"""A build container's log, every line exactly once, across broken log streams.

A followed log stream can end early: an API server or proxy closes long
requests, a connection drops. :func:`follow_log` then reopens it, and
:class:`LogCursor` skips the lines already relayed.

How lines are recognised again: the log is read with ``timestamps=true``, so
each line carries the nanosecond time the container runtime wrote it. A line's
position is (timestamp, index among the lines with that same timestamp); the
cursor keeps the position of the last relayed line, and a later read relays
only lines past it. This stays exact where counting lines from the start would
not: the kubelet rotates large container logs and then serves only the newest
file, so "the first N lines" would name other lines. ``sinceTime`` (whole
seconds, at or before the last relayed line) makes a reopened stream start
near where the last one broke instead of at the beginning; ``sinceSeconds``
alone would depend on the clocks of this service and the node agreeing.

A stream that ends cleanly while the container runs was cut off; one that
ends after the container terminated may still have been cut off just before
(nothing marks a log's end), so after termination the log is read once more
from the last relayed second, which costs a few lines, not the whole log.

Each line comes with its position, which :func:`format_position` turns into
text that is stored with the event the line became: a build followed again
after a restart reads its pod's log from the start and relays only the lines
past the last stored position (:func:`parse_position`), so none is lost and
none repeats.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from .pod_api import PodApi, WatchPolicy, back_off
from .pod_status import pod_status

_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (``None`` if it is not one)."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    seconds, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    whole = int(datetime.fromisoformat(seconds + zone).timestamp())
    return whole * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def since_time(stamp: int) -> str:
    """The whole-second RFC 3339 time at or before ``stamp`` (nanoseconds), for ``sinceTime``."""
    moment = datetime.fromtimestamp(stamp // 1_000_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


Position = tuple[int, int]  # (timestamp in nanoseconds, index among lines of that timestamp)


def format_position(position: Position) -> str:
    """A line's position as stored: ``TIMESTAMP:INDEX``."""
    return f"{position[0]}:{position[1]}"


def parse_position(text: str | None) -> Position | None:
    """The position :func:`format_position` wrote (``None`` for anything else)."""
    stamp, sep, index = (text or "").partition(":")
    if not (sep and stamp.isdigit() and index.isdigit()):
        return None
    return int(stamp), int(index)


@dataclass
class LogCursor:
    """How far a log has been relayed; decides which lines of each read are new.

    Call :meth:`new_read` when a read starts, then :meth:`accept` for each of
    its lines in order. A line without a timestamp (never sent by a real API
    server when asked for them) takes the one of the line before it.
    """

    relayed: tuple[int, int] = (-1, 0)
    _read: tuple[int, int] = (-1, 0)

    def new_read(self) -> None:
        self._read = (-1, 0)

    def since(self) -> str | None:
        """Where a new read should start (``sinceTime``), or ``None`` for the beginning."""
        return since_time(self.relayed[0]) if self.relayed[0] >= 0 else None

    def accept(self, line: str) -> str | None:
        """The line's text without its timestamp when it is new, else ``None``.

        A new line's position is then :attr:`relayed`.
        """
        text, _, message = line.partition(" ")
        stamp = parse_timestamp(text)
        if stamp is None:
            stamp, message = self._read[0], line
        index = self._read[1] + 1 if stamp == self._read[0] else 0
        self._read = (stamp, index)
        if self._read <= self.relayed:
            return None
        self.relayed = self._read
        return message


async def _container_ended(api: PodApi, name: str) -> bool:
    """Whether the build container has terminated (or its pod is gone)."""
    pod = await api.read(name)
    return pod is None or pod_status(pod).container_state == "terminated"


async def follow_log(
    api: PodApi,
    name: str,
    container: str,
    policy: WatchPolicy,
    log: logging.Logger | logging.LoggerAdapter[Any],
    read_timeout: float | None = None,
) -> AsyncIterator[tuple[Position, str]]:
    """Yield each line of a container's log once, in order, with its position.

    Lines are read until the container ends. Broken streams are reopened,
    at once after the container terminated, else after a backoff that grows
    like a watch's, for as long as the container runs: the caller, which
    follows the pod, stops the relay when it must. A stream silent for
    ``read_timeout`` seconds is reopened too (a dead connection otherwise
    looks like a quiet build forever).
    """
    loop = asyncio.get_running_loop()
    cursor = LogCursor()
    last_read = False
    attempt = 0
    while True:
        cursor.new_read()
        ended_cleanly = False
        try:
            try:
                async for line in api.log_lines(name, container, cursor.since(), read_timeout):
                    if not line.endswith("\n") and not last_read:
                        # Cut off mid-line: the next read brings the whole line.
                        break
                    message = cursor.accept(line.removesuffix("\n"))
                    if message is not None:
                        attempt = 0
                        yield cursor.relayed, message
            except TimeoutError:
                # Silent for read_timeout: read again, as after a stream the server ended.
                log.debug("The log of build pod %s was silent, reading it again", name)
            if last_read:
                return
            if await _container_ended(api, name):
                last_read = True
                continue
            ended_cleanly = True
            error: Exception = ConnectionResetError("the stream ended while the build runs")
        except ApiException as failure:
            if failure.status == 404:
                return
            error = failure
        except (aiohttp.ClientError, TimeoutError) as failure:
            error = failure
        # Never out of patience (``failing_since`` is always now): while the
        # container runs its log is worth reading, and the pod's watch decides
        # when the build is lost. A stream the server ended is no failure (a
        # quiet build may outlast a proxy's idle timeout again and again).
        await back_off(
            loop, None, 0 if ended_cleanly else attempt, error, policy, log, "Reading a build log"
        )
        attempt += 1
