"""HTTP access to repository hosts' APIs, with one way of failing.

Every provider that talks HTTP derives from :class:`HTTPRepoProvider`: each
request carries connect and request timeouts from ``resolve_timeout``, each
connection (every redirect hop) is checked against the denied networks, and a
host that is down, slow or answering nonsense becomes an
:class:`~binderhub_service.errors.UpstreamError` that names the host and tells
the user to try later; its status and body stay in the service's log.
Secrets travel only in headers, never in URLs, so URLs can be logged as they are.
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
from ..netguard import DeniedNetwork, GuardedResolver
from .base import RepoProvider

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: The largest answer read from a repository host's API.
MAX_BODY_BYTES = 16 * 1024 * 1024


def origin_of(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``: where a credential may be sent."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").rstrip("."), parts.port


def host_of(url: str) -> str:
    """The host (and port, if any) of ``url``, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or url[:100]
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def redirect_target(url: str, location: str) -> str | None:
    """Where a redirect from ``url`` to ``location`` leads, if it is a readable http(s) URL."""
    try:
        target = urllib.parse.urljoin(url, location)
        parts = urllib.parse.urlsplit(target)
        parts.port  # noqa: B018 (raises for a port out of range)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return target


def join_url(base: str, path: str) -> str:
    """``base`` and ``path`` joined with exactly one slash."""
    return base.rstrip("/") + "/" + path.lstrip("/")


class HTTPRepoProvider(RepoProvider):
    """A provider that resolves refs through an HTTP API.

    Every request, and every redirect, is checked against the denied networks
    (:mod:`binderhub_service.netguard`) at connection time; redirects are
    followed here, one hop at a time, only to ``http`` and ``https`` URLs, and
    credentials in headers go only to the host they were meant for.
    """

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

        With ``follow_redirects``, up to :data:`MAX_REDIRECTS` redirects are
        followed, each checked like the first request; headers other than
        ``Accept`` and ``User-Agent`` are dropped when a redirect leaves the
        origin. Raises :class:`UpstreamError` when no response came: connection
        refused, DNS failure, TLS failure, a redirect to another scheme, or no
        answer within ``resolve_timeout``; and
        :class:`~binderhub_service.netguard.DeniedNetwork` for a host in a
        denied network.
        """
        sent = {"Accept": "application/json", **(headers or {})}
        first = url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                response = await self._fetch_once(url, sent)
            except DeniedNetwork:
                if hop == 0:
                    raise
                # Name the host the user asked for, not where its redirect led.
                raise DeniedNetwork(
                    f"{host_of(first)} redirected to a host this service does not reach."
                ) from None
            location = response.headers.get("Location")
            if not follow_redirects or response.code not in REDIRECT_CODES or not location:
                return response
            target = redirect_target(url, location)
            if target is None:
                self.log.warning("%s redirected to an unusable or non-HTTP URL", host_of(url))
                raise UpstreamError(
                    f"{host_of(url)} redirected to a URL this service does not follow."
                )
            if origin_of(target) != origin_of(url):
                sent = {k: v for k, v in sent.items() if k in ("Accept",)}
            url = target
        raise UpstreamError(f"{host_of(url)} redirects too many times; try again later.")

    async def _fetch_once(self, url: str, headers: dict[str, str]) -> HTTPResponse:
        request = HTTPRequest(
            url,
            headers=headers,
            user_agent=self.user_agent,
            connect_timeout=self.resolve_timeout,
            request_timeout=self.resolve_timeout,
            follow_redirects=False,
        )
        host = host_of(url)
        self.log.debug("Fetching %s", url)
        client = AsyncHTTPClient(
            force_instance=True,
            resolver=GuardedResolver(denied=self.denied),
            max_body_size=MAX_BODY_BYTES,
        )
        try:
            return await client.fetch(request, raise_error=False)
        except (DeniedNetwork, UpstreamError):
            raise
        except HTTPTimeoutError:
            self.log.warning("No answer from %s within %gs", host, self.resolve_timeout)
            raise UpstreamError(
                f"{host} did not answer within {self.resolve_timeout:g} seconds; "
                "it may be down or overloaded. Try again later."
            ) from None
        except (HTTPClientError, OSError, ValueError) as error:
            self.log.warning("Could not connect to %s: %s", host, error)
            raise UpstreamError(
                f"Could not connect to {host}; it may be down. Try again later."
            ) from None
        finally:
            client.close()

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
        return UpstreamError(f"{host} gave an unexpected answer; try again later.")
