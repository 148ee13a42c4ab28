"""A small Server-Sent Events client for tests, on Tornado's HTTP client."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

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

    A plain HTTP/1.1 client on asyncio streams, so that ``stop_after`` can
    drop the connection once that many events arrived (to test reconnection).
    """
    stream = EventStream()
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    all_headers = {"Host": parts.netloc, **EVENT_STREAM, **(headers or {})}
    request = f"GET {path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in all_headers.items()
    )
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        async with asyncio.timeout(timeout):
            writer.write(request.encode() + b"Connection: close\r\n\r\n")
            status_line = await reader.readline()
            stream.status = int(status_line.split()[1])
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                stream.headers[name.strip().lower()] = value.strip()
            chunked = stream.headers.get("transfer-encoding") == "chunked"
            while stop_after is None or len(stream.events) < stop_after:
                if chunked:
                    size = int((await reader.readline()).strip() or b"0", 16)
                    if size == 0:
                        break
                    stream.feed(await reader.readexactly(size))
                    await reader.readexactly(2)
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                    stream.feed(data)
    finally:
        writer.close()
    return stream
