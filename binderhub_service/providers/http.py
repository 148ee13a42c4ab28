"""HTTP access to repository hosts' APIs, with one way of failing.

Every provider that talks HTTP derives from :class:`HTTPRepoProvider`: each
request carries connect and request timeouts from ``resolve_timeout``, and a
host that is down, slow or answering nonsense becomes an
:class:`~binderhub_service.errors.UpstreamError` that names the host and tells
the user to try later. Secrets travel only in headers, never in URLs, so URLs
can be logged as they are.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.simple_httpclient import HTTPTimeoutError
from traitlets import Unicode

from .. import __version__
from ..errors import UpstreamError
from .base import RepoProvider

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def host_of(url: str) -> str:
    """The host (and port, if any) of ``url``, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def join_url(base: str, path: str) -> str:
    """``base`` and ``path`` joined with exactly one slash."""
    return base.rstrip("/") + "/" + path.lstrip("/")


class HTTPRepoProvider(RepoProvider):
    """A provider that resolves refs through an HTTP API."""

    user_agent = Unicode(
        f"binderhub-service/{__version__}",
        help="User-Agent header sent to repository hosts. Default ``binderhub-service/<version>``.",
    ).tag(config=True)

    async def fetch(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> HTTPResponse:
        """GET ``url`` and return the response whatever its status.

        Raises :class:`UpstreamError` when no response came: connection refused,
        DNS failure, TLS failure or no answer within ``resolve_timeout``.
        """
        request = HTTPRequest(
            url,
            headers={"Accept": "application/json", **(headers or {})},
            user_agent=self.user_agent,
            connect_timeout=self.resolve_timeout,
            request_timeout=self.resolve_timeout,
            follow_redirects=follow_redirects,
            max_redirects=5,
        )
        host = host_of(url)
        self.log.debug("Fetching %s", url)
        try:
            return await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPTimeoutError:
            self.log.warning("No answer from %s within %gs", host, self.resolve_timeout)
            raise UpstreamError(
                f"{host} did not answer within {self.resolve_timeout:g} seconds; "
                "it may be down or overloaded. Try again later."
            ) from None
        except (HTTPClientError, OSError) as error:
            self.log.warning("Could not connect to %s: %s", host, error)
            raise UpstreamError(
                f"Could not connect to {host}; it may be down. Try again later."
            ) from None

    def json_body(self, response: HTTPResponse) -> Any:
        """The response's JSON body (``None`` when it is not JSON)."""
        try:
            return json.loads(response.body)
        except (TypeError, ValueError):
            return None

    def json_object(self, response: HTTPResponse) -> dict[str, Any]:
        """The response's body as a JSON object, or an :class:`UpstreamError`."""
        data = self.json_body(response)
        if not isinstance(data, dict):
            raise self.unexpected(response, "no JSON object in the answer")
        return data

    def unexpected(self, response: HTTPResponse, what: str = "") -> UpstreamError:
        """The error for a response this provider cannot use; logs the details."""
        host = host_of(response.effective_url or response.request.url)
        self.log.warning(
            "Unexpected answer from %s (%s): HTTP %s %s",
            host,
            what or response.request.url,
            response.code,
            response.reason,
        )
        return UpstreamError(
            f"{host} gave an unexpected answer (HTTP {response.code}); try again later."
        )
