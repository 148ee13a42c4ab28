"""A small Server-Sent Events client for tests, on Tornado's HTTP client."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

EVENT_STREAM = {"Accept": "text/event-stream"}


@dataclass
class EventStream:
    """What a client received: parsed events with their ids, comments, raw bytes."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    _buffer: bytes = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            data = []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:])
                elif line.startswith("id: "):
                    self.ids.append(int(line[4:]))
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                self.events.append(json.loads("\n".join(data)))

    @property
    def phases(self) -> list[str | None]:
        return [e.get("phase") for e in self.events]

    @property
    def messages(self) -> list[str]:
        return [e["message"] for e in self.events]


async def read_events(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 300,
    stop_after: int | None = None,
) -> EventStream:
    """GET ``url`` as an event stream until the server closes it.

    ``stop_after`` closes the connection from the client side once that many
    events arrived (to test reconnection).
    """
    stream = EventStream()

    class Enough(Exception):
        pass

    def on_chunk(chunk: bytes) -> None:
        stream.feed(chunk)
        if stop_after is not None and len(stream.events) >= stop_after:
            raise Enough()

    def on_header(line: str) -> None:
        if line.startswith("HTTP/"):
            stream.status = int(line.split()[1])
        elif ":" in line:
            name, _, value = line.partition(":")
            stream.headers[name.strip().lower()] = value.strip()

    request = HTTPRequest(
        url,
        headers={**EVENT_STREAM, **(headers or {})},
        streaming_callback=on_chunk,
        header_callback=on_header,
        request_timeout=timeout,
        follow_redirects=False,
    )
    client = AsyncHTTPClient(force_instance=True)
    try:
        await client.fetch(request, raise_error=False)
    except Enough:
        pass
    finally:
        client.close()
    return stream
