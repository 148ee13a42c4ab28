"""The access log: one line per request, tokens scrubbed, probes demoted."""

from __future__ import annotations

import logging
import re

from tornado import web

access_log = logging.getLogger("tornado.access")

_TOKEN_QUERY = re.compile(r"((?:token|access_token|_xsrf)=)[^&]+", re.IGNORECASE)
_QUIET_SUFFIXES = ("/health", "/metrics", "/versions")


def scrub_uri(uri: str) -> str:
    """The request URI with token-like query values replaced."""
    return _TOKEN_QUERY.sub(r"\1[secret]", uri)


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's ``log_function``: status-based level, probes at debug."""
    status = handler.get_status()
    request = handler.request
    if status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    elif request.path.rstrip("/").endswith(_QUIET_SUFFIXES):
        level = logging.DEBUG
    else:
        level = logging.INFO
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        scrub_uri(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )
