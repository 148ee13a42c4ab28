"""A few calls of the container engine's HTTP API, over its Unix socket.

The docker CLI prints sizes rounded for people; the engine's API gives bytes.
Requests are HTTP/1.0, so every answer is one body that ends with the connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .errors import UpstreamError

MAX_ANSWER_BYTES = 64 * 1024 * 1024


async def engine_call(socket_path: str, method: str, path: str, timeout: float) -> Any:
    """``method path`` on the engine at ``socket_path``; its JSON answer.

    Raises :class:`~binderhub_service.errors.UpstreamError` when the engine
    cannot be reached, does not answer in ``timeout`` seconds, or answers an error.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                writer.write(f"{method} {path} HTTP/1.0\r\nHost: engine\r\n\r\n".encode())
                await writer.drain()
                answer = await reader.read(MAX_ANSWER_BYTES)
                while chunk := await reader.read(MAX_ANSWER_BYTES):
                    answer += chunk
            finally:
                writer.close()
    except TimeoutError:
        raise UpstreamError("The container engine did not answer in time.") from None
    except OSError as e:
        raise UpstreamError(f"The container engine cannot be reached ({e.strerror}).") from None
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
        document = json.loads(body) if body.strip() else None
    except (IndexError, ValueError):
        raise UpstreamError("The container engine's answer is not understood.") from None
    if status >= 400:
        message = document.get("message") if isinstance(document, dict) else None
        raise UpstreamError(f"The container engine answered {status}: {message or 'no reason'}")
    return document
