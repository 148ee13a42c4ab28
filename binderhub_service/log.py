"""The access log: one line per request, tokens scrubbed, probes demoted.

An event stream always answers HTTP 200, refusals included (they are a
``failed`` event with a status code): its line adds that status and the reason,
so a refused build request does not look like a success.
"""

from __future__ import annotations

import logging
import re

from tornado import web

from .events import BuildEvent

access_log = logging.getLogger("tornado.access")

_TOKEN_QUERY = re.compile(r"((?:token|access_token|_xsrf)=)[^&]+", re.IGNORECASE)
_QUIET_SUFFIXES = ("/health", "/metrics", "/versions")
_REASON_CHARS = 200


def scrub_uri(uri: str) -> str:
    """The request URI with token-like query values replaced."""
    return _TOKEN_QUERY.sub(r"\1[secret]", uri)


def _level(status: int, path: str) -> int:
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    if path.rstrip("/").endswith(_QUIET_SUFFIXES):
        return logging.DEBUG
    return logging.INFO


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's ``log_function``: status-based level, probes at debug."""
    status = handler.get_status()
    request = handler.request
    refusal: BuildEvent | None = getattr(handler, "refusal", None)
    stream_status = None
    outcome = ""
    if refusal is not None and refusal.status_code is not None:
        stream_status = refusal.status_code
        reason = " ".join(refusal.message.split())[:_REASON_CHARS]
        outcome = f" [stream: failed {stream_status}: {reason}]"
    access_log.log(
        _level(stream_status or status, request.path),
        "%d %s %s (%s) %.2fms%s",
        status,
        request.method,
        scrub_uri(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
        outcome,
    )
