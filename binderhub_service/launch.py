"""Start a user's server on the hub with an image, through the hub's REST API.

The service never starts servers itself: it asks the hub, with the user's own
OAuth token (so the hub's roles decide, and the hub records who started what),
to start the user's default or named server with ``user_options`` that make
the spawner run the image, then follows the hub's progress stream until the
server is ready. The request is the one both JupyterHub 5 and 6 accept: the
body of ``POST users/{name}/server`` (or ``servers/{server}``) is the
``user_options`` object itself.

What the spawner receives is :attr:`Launcher.spawner_options`: KubeSpawner's
profile with an unlisted choice, DockerSpawner's ``image``, or a callable.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.services.auth import check_scopes
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Enum, Float, Unicode, Union, default
from traitlets import Callable as CallableTrait
from traitlets.config import LoggingConfigurable

from .errors import Forbidden, ServiceError
from .events import BuildEvent, Phase
from .spawner import SSEParser

SPAWNER_SHAPES = ("kubespawner", "dockerspawner")
START_SCOPE = "servers!user"
READ_SCOPE = "read:servers!user"
#: Scopes a user's token needs here to launch: grant them to the service's OAuth client.
LAUNCH_SCOPES = (START_SCOPE, READ_SCOPE)


class LaunchError(ServiceError):
    """The hub did not start the server; the message is the hub's reason."""

    status_code = 500


class MissingPermission(Forbidden):
    """The user's token lacks a scope the launch needs; ``scope`` names it."""

    def __init__(self, user: str, scope: str) -> None:
        super().__init__(
            f"{user} may not start servers through this service: the login token lacks the "
            f"hub scope {scope.replace('!user', f'!user={user}')}. The hub's administrator "
            f"grants it by adding {scope!r} to this service's oauth_client_allowed_scopes "
            "(and the user needs it through a role)."
        )
        self.scope = scope


class ServerRunning(ServiceError):
    """The server is running (or starting) with other options; ``url`` is where it runs."""

    status_code = 409

    def __init__(self, url: str, server_name: str) -> None:
        what = f"Your server {server_name!r}" if server_name else "Your default server"
        super().__init__(
            f"{what} is already running another environment. Open it, or stop it and "
            "start again with this one."
        )
        self.url = url


@dataclass(frozen=True)
class LaunchRequest:
    """One launch: whose server, with what image, for which repository.

    ``binder`` holds BinderHub's ``binder_*`` fields (``binder_ref_url``, ...),
    which are given to a callable :attr:`Launcher.spawner_options` and sent in
    the final ``ready`` event. ``replace``: stop a server running other options.
    ``hub_origin`` (e.g. ``https://hub.example.org``) makes the server's URL absolute
    when the hub reports a path.
    """

    user: str
    token: str
    image: str
    repo_url: str = ""
    server_name: str = ""
    replace: bool = False
    binder: dict[str, str] = field(default_factory=dict)
    hub_origin: str = ""


def kubespawner_options(image: str, profile: str, option: str) -> dict[str, str]:
    """KubeSpawner's ``user_options`` for ``image`` as the unlisted choice of a profile option."""
    return {"profile": profile, f"{option}--unlisted-choice": image}


def dockerspawner_options(image: str) -> dict[str, str]:
    """DockerSpawner's ``user_options`` for ``image`` (it must be in ``allowed_images``)."""
    return {"image": image}


def missing_launch_scope(user: str, scopes: frozenset[str]) -> str | None:
    """The first scope of :data:`LAUNCH_SCOPES` the token's ``scopes`` lack for ``user``."""
    for scope in LAUNCH_SCOPES:
        concrete = scope.replace("!user", f"!user={user}")
        if not check_scopes({concrete}, set(scopes)):
            return scope
    return None


#: Receives each ``launching`` event, and None after a quiet while (time for a keepalive).
ProgressCallback = Callable[[BuildEvent | None], Awaitable[None]]


class Launcher(LoggingConfigurable):
    """Starts a user's server on the hub with an image and follows it until it is ready."""

    hub_api_url = Unicode(
        help="""The hub's REST API as this service reaches it, e.g.
        ``http://127.0.0.1:8081/hub/api``. Default: ``$JUPYTERHUB_API_URL``, which the hub
        gives a managed service.""",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    spawner_options = Union(
        [Enum(SPAWNER_SHAPES), CallableTrait()],
        default_value="kubespawner",
        help="""What the spawner receives as ``user_options`` to run the image.
        ``kubespawner`` (the default): ``{"profile": <profile>,
        "<image_option>--unlisted-choice": <image>}``, for a KubeSpawner profile whose
        option ``image_option`` allows an unlisted choice. ``dockerspawner``:
        ``{"image": <image>}``, for DockerSpawner with the image allowed by
        ``allowed_images``. Or a callable ``f(image, launch) -> dict`` that takes the image
        and the :class:`~binderhub_service.launch.LaunchRequest`.""",
    ).tag(config=True)

    profile = Unicode(
        "",
        help="""Slug of the KubeSpawner profile that runs launched images
        (``spawner_options = "kubespawner"``). Default ``""``: the first profile.
        Example: ``"binder"``.""",
    ).tag(config=True)

    image_option = Unicode(
        "image",
        help="""Name of the profile option whose unlisted choice takes the image
        (``spawner_options = "kubespawner"``). Default ``image``.""",
    ).tag(config=True)

    named_servers = Bool(
        False,
        help="""Start a named server per repository (named after it) instead of the user's
        default server. Needs ``c.JupyterHub.allow_named_servers = True``; a user at the
        hub's ``named_server_limit_per_user`` is told so. Default off.""",
    ).tag(config=True)

    start_timeout = Float(
        900.0,
        help="""Seconds to wait for a server to start (and for a replaced one to stop)
        before telling the user it did not. Default 900.""",
    ).tag(config=True)

    def user_options(self, request: LaunchRequest) -> dict[str, Any]:
        """The ``user_options`` the spawner receives for ``request``."""
        shape = self.spawner_options
        if callable(shape):
            options = shape(request.image, request)
            if not isinstance(options, dict):
                raise TypeError("c.Launcher.spawner_options must return a dict")
            return options
        if shape == "dockerspawner":
            return dockerspawner_options(request.image)
        return kubespawner_options(request.image, self.profile, self.image_option)

    def _server_path(self, request: LaunchRequest) -> str:
        user = urllib.parse.quote(request.user, safe="")
        if request.server_name:
            return f"users/{user}/servers/{urllib.parse.quote(request.server_name, safe='')}"
        return f"users/{user}/server"

    async def _api(
        self, request: LaunchRequest, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the hub's API with the user's token: the status and the decoded answer.

        A refusal is raised: 403 as :class:`MissingPermission`, others as
        :class:`LaunchError` with the hub's message.
        """
        if not self.hub_api_url:
            raise LaunchError(
                "The hub's API URL is unknown: set c.Launcher.hub_api_url (or run the service "
                "as a JupyterHub service, which sets JUPYTERHUB_API_URL)."
            )
        url = f"{self.hub_api_url.rstrip('/')}/{path}"
        http_request = HTTPRequest(
            url,
            method=method,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"token {request.token}", "Accept": "application/json"},
            request_timeout=self.start_timeout,
            follow_redirects=False,
            allow_nonstandard_methods=method == "DELETE",
            **kwargs,
        )
        try:
            response = await AsyncHTTPClient().fetch(http_request)
        except HTTPClientError as e:
            message = hub_message(e)
            if e.code == 403:
                scope = READ_SCOPE if method == "GET" else START_SCOPE
                raise MissingPermission(request.user, scope) from None
            raise LaunchError(message, 400 if e.code == 400 else 502) from None
        except OSError as e:
            raise LaunchError(f"The hub could not be reached to start the server: {e}") from None
        data = json.loads(response.body) if response.body and not kwargs else None
        return response.code, data

    async def server_model(self, request: LaunchRequest) -> dict[str, Any] | None:
        """The hub's model of the server ``request`` names, or None if it has none."""
        user = urllib.parse.quote(request.user, safe="")
        _, model = await self._api(request, "GET", f"users/{user}")
        servers = (model or {}).get("servers") or {}
        server = servers.get(request.server_name)
        return server if isinstance(server, dict) else None

    async def launch(
        self, request: LaunchRequest, progress: ProgressCallback, keepalive: float = 25.0
    ) -> BuildEvent:
        """Start the server (or join its start) and follow it; the final ``ready`` event.

        ``progress`` receives a ``launching`` event per step, and None when the
        hub has said nothing for ``keepalive`` seconds. Raises
        :class:`ServerRunning` when the server runs other options (unless
        ``request.replace``), :class:`MissingPermission` or :class:`LaunchError`.
        """
        options = self.user_options(request)
        server = await self.server_model(request)
        if server is not None and (server.get("ready") or server.get("pending")):
            if server.get("pending") == "stop":
                await progress(launching("Waiting for your server to stop..."))
                await self._wait_stopped(request)
            elif server.get("user_options") == options:
                await progress(launching("Your server is already starting with this image."))
                return await self._follow(request, progress, keepalive)
            elif not request.replace:
                raise ServerRunning(str(server.get("url") or ""), request.server_name)
            else:
                await progress(launching("Stopping your server to start it again..."))
                await self._api(request, "DELETE", self._server_path(request))
                await self._wait_stopped(request)
        await progress(launching(f"Launching server with {request.image}..."))
        try:
            await self._api(request, "POST", self._server_path(request), options)
        except LaunchError as refused:
            if refused.status_code == 400:
                raise
            # A spawn that failed at once answers 500 without its reason; the
            # hub's progress of the server says why.
            try:
                return await self._follow(request, progress, keepalive)
            except LaunchError as reason:
                raise (reason if reason.status_code == 500 else refused) from None
        return await self._follow(request, progress, keepalive)

    async def _wait_stopped(self, request: LaunchRequest) -> None:
        async with asyncio.timeout(self.start_timeout):
            while True:
                server = await self.server_model(request)
                if server is None or not (server.get("ready") or server.get("pending")):
                    return
                await asyncio.sleep(0.5)

    async def _follow(
        self, request: LaunchRequest, progress: ProgressCallback, keepalive: float
    ) -> BuildEvent:
        """Relay the hub's progress stream until the server is ready or has failed."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        parser = SSEParser(queue.put_nowait)
        fetch = asyncio.ensure_future(
            self._api(
                request,
                "GET",
                self._server_path(request) + "/progress",
                streaming_callback=parser.feed,
            )
        )
        fetch.add_done_callback(lambda _: queue.put_nowait({}))
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive):
                        event = await queue.get()
                except TimeoutError:
                    await progress(None)
                    continue
                if not event:
                    await fetch
                    raise LaunchError("The hub ended the server's progress without an answer.")
                message = str(event.get("message") or "").strip()
                if event.get("failed"):
                    raise LaunchError(message or "The server failed to start.")
                if event.get("ready"):
                    return self._ready(request, str(event.get("url") or ""))
                if message:
                    await progress(launching(message))
        finally:
            fetch.cancel()

    def _ready(self, request: LaunchRequest, url: str) -> BuildEvent:
        """BinderHub's final ``ready`` event for a started server (``url`` is its root)."""
        url = urllib.parse.urljoin(request.hub_origin + "/", url) if request.hub_origin else url
        extra: dict[str, Any] = {
            "url": url,
            "image": request.image,
            "repo_url": request.repo_url,
            # The hub's login authenticates the browser at the server: no server token.
            "token": "",
            **request.binder,
        }
        return BuildEvent(Phase.READY, f"server running at {url}", extra=extra)


def launching(message: str) -> BuildEvent:
    return BuildEvent(Phase.LAUNCHING, message)


def hub_message(error: HTTPClientError) -> str:
    """The hub's reason for an error answer, from its JSON body."""
    try:
        body = json.loads(error.response.body) if error.response else {}
        message = str(body.get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return message or f"The hub answered {error.code}."
