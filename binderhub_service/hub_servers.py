"""Which of this service's images running servers use, asked of JupyterHub.

JupyterHub's REST API lists every user with an active server
(``GET /users?state=active``) and, for each server, the ``user_options`` it was
started with. The spawner hook (:class:`~binderhub_service.spawner.BinderHubBuildHook`)
records the image it built there under :data:`IMAGE_OPTION`; profile forms that
let users pick an image (e.g. an unlisted choice) keep the image's name there
too. Every string option naming one of this service's images counts.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

# The user option the spawner hook records the image it set in.
IMAGE_OPTION = "binderhub_service_image"

PAGE_SIZE = 200
MAX_PAGES = 10_000


class HubUnavailable(Exception):
    """The hub could not say which servers run; the message says why."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def images_in_users(users: list[Any], ours: re.Pattern[str]) -> set[str]:
    """The image names of ours in the ``user_options`` of every active server of ``users``."""
    found: set[str] = set()
    for user in users:
        servers = user.get("servers") if isinstance(user, dict) else None
        for server in (servers or {}).values():
            if not isinstance(server, dict) or server.get("stopped"):
                continue
            found.update(s for s in _strings(server.get("user_options")) if ours.match(s))
    return found


async def running_images(
    api_url: str, token: str, ours: re.Pattern[str], timeout: float = 30.0
) -> set[str]:
    """Images matching ``ours`` that running (or starting) servers were started with.

    ``api_url`` is the hub's API (``http://hub:8081/hub/api``); ``token`` needs
    the scopes ``list:users`` and ``read:servers``. Raises :class:`HubUnavailable`
    when the hub does not answer, refuses the token, or answers something else.
    """
    client = AsyncHTTPClient()
    found: set[str] = set()
    offset = 0
    for _ in range(MAX_PAGES):
        query = urllib.parse.urlencode({"state": "active", "offset": offset, "limit": PAGE_SIZE})
        request = HTTPRequest(
            f"{api_url.rstrip('/')}/users?{query}",
            headers={
                "Authorization": f"token {token}",
                "Accept": "application/jupyterhub-pagination+json",
            },
            request_timeout=timeout,
            follow_redirects=False,
        )
        try:
            response = await client.fetch(request)
        except HTTPClientError as e:
            if e.code == 599:
                raise HubUnavailable(f"the hub did not answer in {timeout:g} seconds") from None
            hint = " (the token needs list:users and read:servers)" if e.code in (401, 403) else ""
            raise HubUnavailable(f"the hub answered {e.code}{hint}") from None
        except (OSError, TimeoutError) as e:
            raise HubUnavailable(f"the hub did not answer ({e})") from None
        try:
            page = json.loads(response.body)
            users = page["items"]
            following = (page.get("_pagination") or {}).get("next")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise HubUnavailable("the hub's answer is not a list of users") from None
        found |= images_in_users(users, ours)
        if not following or not users:
            return found
        offset = int(following.get("offset", offset + len(users)))
    raise HubUnavailable("the hub's list of users did not end")
