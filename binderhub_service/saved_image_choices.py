"""Hub-side helpers: offer each user the saved images they may use when they start a server.

Configure them in ``jupyterhub_config.py``::

    from binderhub_service.saved_image_choices import SavedImageChoices

    choices = SavedImageChoices(
        service_url="http://127.0.0.1:8000/services/binder/",
        static_profiles=[{"display_name": "Python", "slug": "python", "profile_options": {
            "image": {"display_name": "Image", "choices": {
                "base": {"display_name": "Base", "kubespawner_override": {"image": "base:1"}},
            }},
        }}],
    )
    c.KubeSpawner.profile_list = choices.profiles           # KubeSpawner
    c.DockerSpawner.allowed_images = choices.images          # or DockerSpawner
    c.Spawner.pre_spawn_hook = choices.record_use            # count the uses

Each helper asks the service (``GET api/v1/images`` on behalf of the spawning
user, with a token holding the service's admin scope) for the images the user
may use: their own, those shared with one of their hub groups, and public
ones. A saved image appears as the choice ``<owner>/<name>``.

The spawn page must render even when the service is down: each helper waits
at most :attr:`SavedImageChoices.timeout` seconds, then answers the static
list and logs a warning; after a failure it does not ask again for
:attr:`SavedImageChoices.retry_seconds`. DockerSpawner calls ``allowed_images``
synchronously, so :meth:`SavedImageChoices.images` blocks the hub for at most
``timeout`` seconds once per ``retry_seconds`` while the service is down.
"""

from __future__ import annotations

import copy
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Any as AnyTrait
from traitlets import Float, List, Unicode, default
from traitlets.config import LoggingConfigurable

from .auth import ON_BEHALF_OF_ARGUMENT


def choice_key(image: dict[str, Any]) -> str:
    """The choice a saved image is offered as: ``<owner>/<name>``."""
    return f"{image['owner']}/{image['name']}"


def parse_choice_key(key: object) -> tuple[str, str] | None:
    """(owner, name) of a choice made by :func:`choice_key`, or None for any other value."""
    if not isinstance(key, str):
        return None
    owner, sep, name = key.rpartition("/")
    return (owner, name) if sep and owner and name else None


def add_to_profiles(
    profiles: list[dict[str, Any]], images: list[dict[str, Any]], slug: str, option: str
) -> list[dict[str, Any]]:
    """A copy of KubeSpawner ``profiles`` with ``images`` as choices of the profile ``slug``
    (the first profile when empty) under its option ``option`` (created if missing)."""
    profiles = copy.deepcopy(profiles)
    if not images or not profiles:
        return profiles
    target = next((p for p in profiles if p.get("slug") == slug), None) if slug else profiles[0]
    if target is None:
        return profiles
    options = target.setdefault("profile_options", {})
    choices = options.setdefault(option, {"display_name": "Saved image", "choices": {}})
    choices = choices.setdefault("choices", {})
    for image in images:
        choices[choice_key(image)] = {
            "display_name": f"{image['name']} ({image['owner']})",
            "kubespawner_override": {"image": image["image"]},
        }
    return profiles


def add_to_allowed_images(
    static: dict[str, str] | list[str], images: list[dict[str, Any]]
) -> dict[str, str]:
    """DockerSpawner ``allowed_images``: the static ones and ``images`` by choice key."""
    allowed = dict(static) if isinstance(static, dict) else {i: i for i in static}
    for image in images:
        allowed[choice_key(image)] = image["image"]
    return allowed


class SavedImageChoices(LoggingConfigurable):
    """Adds the saved images a user may use to KubeSpawner profiles or DockerSpawner images."""

    service_url = Unicode(
        help="""URL of binderhub-service as the hub reaches it, e.g.
        ``http://127.0.0.1:8000/services/binder/`` or the service's own address.""",
    ).tag(config=True)

    api_token = Unicode(
        help="""Hub token the helpers authenticate with; it needs
        ``access:services!service=<name>`` and the service's admin scope (to ask on behalf
        of the spawning user). Default: ``$BINDERHUB_SERVICE_HOOK_TOKEN``.""",
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("BINDERHUB_SERVICE_HOOK_TOKEN", "")

    timeout = Float(
        3.0,
        help="""Seconds to wait for the service before answering the static list (the spawn
        page must render when the service is down). Default 3.""",
    ).tag(config=True)

    retry_seconds = Float(
        30.0,
        help="""Seconds after a failed request during which the helpers answer the static list
        without asking the service. Default 30.""",
    ).tag(config=True)

    static_profiles: List[dict[str, Any]] = List(
        help="""KubeSpawner profiles offered to everyone; :meth:`profiles` returns them with the
        user's saved images added, or as they are when the service does not answer.""",
    ).tag(config=True)

    profile = Unicode(
        "",
        help="""Slug of the profile whose option lists the saved images. Default: the first
        profile.""",
    ).tag(config=True)

    option = Unicode(
        "image",
        help="""Name of the profile option (created when missing) that lists saved images;
        its choices set ``image``. Default ``image``.""",
    ).tag(config=True)

    static_images = AnyTrait(
        [],
        help="""DockerSpawner images offered to everyone (a list, or a dict of display name to
        image); :meth:`images` returns them with the user's saved images added.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._failed_until = 0.0

    def _url(self, path: str, user: str, **query: str) -> str:
        arguments = urllib.parse.urlencode({**query, ON_BEHALF_OF_ARGUMENT: user})
        return f"{self.service_url.rstrip('/')}/api/v1/{path}?{arguments}"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.api_token}"}

    def _should_ask(self) -> bool:
        return time.monotonic() >= self._failed_until

    def _failed(self, user: str, reason: Exception) -> None:
        """Log a failed listing; pause asking when the service is down (no answer, or 5xx),
        not when it refused one request (4xx: e.g. a token without the admin scope)."""
        code = getattr(reason, "code", None)
        if isinstance(code, int) and code < 500:
            self.log.warning(
                "Saved images of %s refused (%s); offering the static list", user, reason
            )
            return
        self._failed_until = time.monotonic() + self.retry_seconds
        self.log.warning(
            "Saved images of %s unavailable (%s); offering the static list for %.0fs",
            user,
            reason,
            self.retry_seconds,
        )

    @staticmethod
    def _images_from(body: bytes) -> list[dict[str, Any]]:
        images = json.loads(body)["images"]
        return [i for i in images if all(isinstance(i.get(k), str) for k in ("owner", "name"))]

    async def visible_images(self, user: str) -> list[dict[str, Any]] | None:
        """The saved images ``user`` may use, or None when the service does not answer."""
        if not self._should_ask():
            return None
        request = HTTPRequest(
            self._url("images", user),
            headers=self._headers,
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
            return self._images_from(response.body)
        except Exception as e:
            self._failed(user, e)
            return None

    def visible_images_sync(self, user: str) -> list[dict[str, Any]] | None:
        """:meth:`visible_images` for synchronous callers (DockerSpawner)."""
        if not self._should_ask():
            return None
        request = urllib.request.Request(self._url("images", user), headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return self._images_from(response.read())
        except Exception as e:
            self._failed(user, e)
            return None

    async def profiles(self, spawner: Any) -> list[dict[str, Any]]:
        """For ``KubeSpawner.profile_list``: the static profiles with the user's saved images."""
        images = await self.visible_images(spawner.user.name)
        return add_to_profiles(self.static_profiles, images or [], self.profile, self.option)

    def images(self, spawner: Any) -> dict[str, str]:
        """For ``DockerSpawner.allowed_images``: the static images and the user's saved ones."""
        images = self.visible_images_sync(spawner.user.name)
        return add_to_allowed_images(self.static_images, images or [])

    async def record_use(self, spawner: Any) -> None:
        """For ``Spawner.pre_spawn_hook``: count a spawn with a saved image the user chose.

        Never fails the spawn: an unreachable service is logged and the spawn goes on.
        """
        chosen = parse_choice_key((spawner.user_options or {}).get(self.option))
        if chosen is None or not self._should_ask():
            return
        owner, name = chosen
        request = HTTPRequest(
            self._url(
                f"images/{urllib.parse.quote(name, safe='')}/uses", spawner.user.name, owner=owner
            ),
            method="POST",
            body=b"",
            headers=self._headers,
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except Exception as e:
            self.log.warning("Could not count a use of saved image %s/%s: %s", owner, name, e)
