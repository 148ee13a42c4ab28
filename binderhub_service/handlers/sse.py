"""The one writer of Server-Sent Event streams."""

from __future__ import annotations

import asyncio

from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import ServiceError
from ..events import BuildEvent, failed, sse_frame
from .base import BaseHandler


class EventStreamHandler(BaseHandler):
    """A handler whose response is an event stream.

    :meth:`send` waits until the client has taken each chunk, and turns a
    closed connection into :class:`tornado.web.Finish`, so a departed client
    ends only its own request; a client that takes no chunk for
    ``write_timeout`` seconds is disconnected. Refusals before the stream
    starts (authentication, rate limit) are ``failed`` events with the status
    code, never a redirect.
    """

    write_timeout = 0.0

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except ServiceError as e:
            self.start_stream()
            await self.send_event(failed(e.message, e.status_code))
            self.finish()

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send(self, data: bytes) -> None:
        try:
            self.write(data)
            async with asyncio.timeout(self.write_timeout or None):
                await self.flush()
        except StreamClosedError:
            raise web.Finish() from None
        except TimeoutError:
            self.request.connection.close()  # type: ignore[union-attr]
            raise web.Finish() from None

    #: The ``failed`` event this handler sent itself (a refusal), for the access log.
    refusal: BuildEvent | None = None

    async def send_event(self, event: BuildEvent, event_id: int = 1) -> None:
        if event.is_final and event.status_code is not None:
            self.refusal = event
        await self.send(sse_frame(event_id, event))

    def last_event_id(self) -> int | None:
        """The client's ``Last-Event-ID`` as a number, if it sent a valid one."""
        value = self.request.headers.get("Last-Event-ID", "").strip()
        return int(value) if value.isdigit() and len(value) < 12 else None
