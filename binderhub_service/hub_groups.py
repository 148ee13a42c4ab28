"""The hub groups of a user the service acts for, read from the hub's REST API.

A user's own requests carry their groups: the hub's identity model (what a
user's token or login resolves to) always names them. A request an admin
component sends on behalf of a user (``on_behalf_of``, e.g. the spawner
helpers) carries only the user's name; the service then asks the hub
(``GET {hub_api}/users/{name}``) with its own token, which needs the
``read:users:groups`` scope (grant it to the service in ``c.JupyterHub.load_roles``).
When the hub does not answer or refuses, the user counts as in no group: they
see their own and public images only, and a warning names the reason.
"""

from __future__ import annotations

import json
import time
import urllib.parse

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float
from traitlets.config import LoggingConfigurable


class HubGroups(LoggingConfigurable):
    """Looks up a user's hub groups with the service's own hub token, briefly cached."""

    timeout = Float(
        5.0,
        help="""Seconds to wait for the hub to name a user's groups before treating the user
        as in no group. Default 5.""",
    ).tag(config=True)

    cache_seconds = Float(
        60.0,
        help="""Seconds a user's groups, once read from the hub, are reused. A user added to or
        removed from a group is seen as such after at most this long. 0 asks every time.
        Default 60.""",
    ).tag(config=True)

    def __init__(self, api_url: str, api_token: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.api_url = api_url.rstrip("/")
        self._api_token = api_token
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def groups_of(self, user: str) -> frozenset[str]:
        """The names of the hub groups ``user`` belongs to (empty when the hub cannot say)."""
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is not None and cached[0] > now:
            return cached[1]
        groups = await self._ask(user)
        if groups is None:
            return frozenset()
        if self.cache_seconds > 0:
            self._cache[user] = (now + self.cache_seconds, groups)
        return groups

    async def _ask(self, user: str) -> frozenset[str] | None:
        request = HTTPRequest(
            f"{self.api_url}/users/{urllib.parse.quote(user, safe='')}",
            headers={"Authorization": f"token {self._api_token}"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as e:
            self.log.warning("Cannot read the hub groups of user %s: %s", user, e)
            return None
        if response.code != 200:
            self.log.warning(
                "The hub answered %s when asked for the groups of user %s; the service's "
                "token needs the read:users:groups scope",
                response.code,
                user,
            )
            return None
        try:
            names = json.loads(response.body).get("groups")
        except (ValueError, AttributeError):
            names = None
        if not isinstance(names, list):
            self.log.warning("The hub did not name the groups of user %s", user)
            return None
        return frozenset(n for n in names if isinstance(n, str))
