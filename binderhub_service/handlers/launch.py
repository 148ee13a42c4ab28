"""Launch links: ``v2/<provider>/<spec>`` and ``v2/saved/<owner>/<name>``, and their streams.

A launch link is a page (behind the hub's login) that follows the build's
event stream and, once the image exists, the start of the user's server, then
sends the browser there. The same stream serves API clients:
``GET build/<provider>/<spec>`` without ``build_only=true`` is BinderHub's
launch stream, whose ``launching`` events follow the build's and whose final
``ready`` event carries the server's ``url``. ``launch/saved/<owner>/<name>``
is the stream of a saved image, which needs no build.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from tornado.escape import xhtml_escape
from tornado.log import app_log

from ..build_requests import BuildRequests
from ..builds import Build
from ..errors import InvalidSpec, ServiceError
from ..events import KEEPALIVE_FRAME, BuildEvent, Phase, failed, sse_frame
from ..image_access import may_use
from ..launch import (
    Launcher,
    LaunchRequest,
    MissingPermission,
    ServerRunning,
    missing_launch_scope,
)
from ..launch_paths import LAUNCH_ARGUMENTS, launch_path, server_name
from ..states import BuildState
from ..store import Store
from .accept import accepts_event_stream
from .base import BaseHandler
from .build import BuildHandler
from .page import PAGE_POLICY, STATIC_DIR
from .sse import EventStreamHandler

REPLACE_ARGUMENT = "replace"


def badge_markdown(service_url: str, link: str) -> str:
    """A Markdown badge that opens ``link``."""
    return f"[![Launch]({service_url}static/launch-badge.svg)]({link})"


class LaunchPageHandler(BaseHandler):
    """``GET v2/<provider>/<spec>``: the launch page of a repository.

    The query (``urlpath``, ``labpath``, ``filepath``) is checked here: a value
    leading out of the user's server answers 400 with the reason on the page,
    and nothing starts.
    """

    browser_page = True
    content_security_policy = PAGE_POLICY

    def initialize(self, *, base_url: str) -> None:
        self.base_url = base_url

    def get(self, prefix: str, spec: str) -> None:
        # The stream takes the spec as sent (still escaped), as the build API does.
        raw = self.request.path[len(self.base_url + "v2/") :]
        self.render_launch(f"build/{raw}", f"{prefix}/{spec}")

    def render_launch(self, stream: str, title: str) -> None:
        """The page for ``stream`` (relative to the base URL), with the link to share."""
        if self.hub_auth is not None:
            self.xsrf_token  # noqa: B018 (sets the _xsrf cookie the stream needs)
        arguments = {
            name: self.get_query_argument(name)
            for name in LAUNCH_ARGUMENTS
            if name in self.request.arguments
        }
        error = ""
        path = ""
        try:
            path = launch_path(arguments)
        except InvalidSpec as e:
            error = e.message
            self.set_status(400)
        service_url = f"{self.request.protocol}://{self.request.host}{self.base_url}"
        link = f"{service_url}{self.request.uri[len(self.base_url) :]}"
        values = {
            "base": self.base_url,
            "title": title,
            "stream": "" if error else stream,
            "path": path,
            "error": error,
            "link": link,
            "badge": badge_markdown(service_url, link),
        }
        html = (STATIC_DIR / "launch.html").read_text()
        for name, value in values.items():
            html = html.replace("{{" + name + "}}", xhtml_escape(value))
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)


class SavedLaunchPageHandler(LaunchPageHandler):
    """``GET v2/saved/<owner>/<name>``: the launch page of a saved image (no build)."""

    def get(self, owner: str, name: str) -> None:
        raw = self.request.path[len(self.base_url + "v2/saved/") :]
        self.render_launch(f"launch/saved/{raw}", f"{owner}/{name}")


class LaunchStreamMixin(EventStreamHandler):
    """Start the user's server with an image and relay its progress as ``launching`` events."""

    launcher: Launcher
    base_url: str
    keepalive_interval: float

    def user_token(self) -> str:
        """The requesting user's own hub token, checked for the scopes a launch needs.

        Refused before anything starts (no build either) when there is no hub
        user or the token lacks one of those scopes.
        """
        identity = self.identity
        token = self.hub_auth.get_token(self) if self.hub_auth is not None else None
        if identity.kind != "user" or not token:
            raise ServiceError(
                "Launching starts a server on the hub for a logged-in hub user: this request "
                "has no hub user.",
                403,
            )
        missing = missing_launch_scope(identity.name, identity.scopes)
        if missing is not None:
            raise MissingPermission(identity.name, missing)
        return str(token)

    def launch_request(
        self, token: str, image: str, repo_url: str, binder: dict[str, str]
    ) -> LaunchRequest:
        """The launch of ``image`` for the requesting user, with their own hub token."""
        identity = self.identity
        launch_host = f"{self.request.protocol}://{self.request.host}{self.base_url}"
        return LaunchRequest(
            user=identity.name,
            token=token,
            image=image,
            repo_url=repo_url,
            server_name=server_name(repo_url or image) if self.launcher.named_servers else "",
            replace=self.get_query_argument(REPLACE_ARGUMENT, "") == "1",
            binder={"binder_launch_host": launch_host, **binder},
            hub_origin=f"{self.request.protocol}://{self.request.host}",
        )

    #: The id of the next event this stream sends (after a build's, its launch events).
    next_id: int | None = None

    async def launch(self, request: LaunchRequest, first_id: int) -> bool:
        """Launch and relay: ``launching`` events numbered from ``first_id``, then ``ready``;
        whether the server is ready."""
        number = self.next_id = first_id

        async def progress(event: BuildEvent | None) -> None:
            nonlocal number
            if event is None:
                await self.send(KEEPALIVE_FRAME)
                return
            await self.send(sse_frame(number, event))
            number = self.next_id = number + 1

        try:
            ready = await self.launcher.launch(request, progress, self.keepalive_interval)
        except ServerRunning as e:
            await self.send_event(
                BuildEvent(
                    Phase.FAILED, e.message, status_code=e.status_code, extra={"server_url": e.url}
                ),
                number,
            )
            return False
        except ServiceError as e:
            await self.send_event(failed(e.message, e.status_code), number)
            return False
        await self.send(sse_frame(number, ready))
        return True

    async def guarded(self, run: Any) -> None:
        """Run the stream's work; any error still ends the stream with a ``failed`` event."""
        try:
            await run()
        except ServiceError as e:
            await self.send_event(failed(e.message, e.status_code), self._final_id())
        except Exception:
            app_log.exception("Unexpected error answering %s", self.request.path)
            message = "An internal error stopped the request; the service's log has details."
            await self.send_event(failed(message, 500), self._final_id())

    def _final_id(self) -> int:
        return self.next_id or (self.last_event_id() or 0) + 1


class LaunchBuildHandler(LaunchStreamMixin, BuildHandler):
    """``GET build/<provider>/<spec>``: the build stream, and without ``build_only=true``
    BinderHub's launch stream.

    Launch mode relays the build's events except its ``ready`` (an image found
    already built is one ``built`` event), then launches. A client that
    reconnects with ``Last-Event-ID`` resumes the build's log and then joins
    the start of the same server.
    """

    def initialize(  # type: ignore[override]
        self,
        *,
        requests: BuildRequests,
        keepalive_interval: float,
        base_url: str,
        launcher: Launcher,
    ) -> None:
        super().initialize(
            requests=requests, keepalive_interval=keepalive_interval, base_url=base_url
        )
        self.base_url = base_url
        self.launcher = launcher

    async def get(self, prefix: str, spec: str) -> None:
        if self.get_query_argument("build_only", "").lower() == "true":
            await super().get(prefix, spec)
            return
        self.start_stream()
        await self.guarded(lambda: self._build_and_launch(prefix))

    async def _build_and_launch(self, prefix: str) -> None:
        if not accepts_event_stream(self.request.headers.get("Accept")):
            raise ServiceError("This endpoint only serves text/event-stream.", 406)
        token = self.user_token()
        raw_prefix, raw_spec = self.raw_spec()
        last = self.last_event_id()
        answer = await self.requests.request(
            self.identity, raw_prefix, raw_spec, resume=last is not None
        )
        target = answer.target
        repo_url = target.repo.repo_url
        request = self.launch_request(
            token,
            target.image_name,
            repo_url,
            {"binder_request": f"v2/{raw_prefix}/{raw_spec}"},
        )
        if answer.build is None:
            if last is None:
                await self.send_event(
                    BuildEvent(
                        Phase.BUILT, "Found built image, launching...", image_name=target.image_name
                    ),
                    1,
                )
            first = (last or 1) + 1
        else:
            if not await self._relay_build(answer.build, last or 0):
                return
            first = max(len(answer.build.frames), (last or 0) + 1)
        await self.launch(request, first)

    async def _relay_build(self, build: Build, offset: int) -> bool:
        """Relay the build's log from ``offset`` without its ``ready``; whether it succeeded."""
        async for chunk in build.stream(offset, keepalive=self.keepalive_interval):
            if build.state is BuildState.SUCCEEDED and chunk.endswith(build.frames[-1]):
                chunk = chunk[: -len(build.frames[-1])]
            if chunk:
                await self.send(chunk)
        return build.state is BuildState.SUCCEEDED


class SavedLaunchHandler(LaunchStreamMixin):
    """``GET launch/saved/<owner>/<name>``: launch a saved image, as an event stream."""

    def initialize(
        self, *, store: Store, launcher: Launcher, base_url: str, keepalive_interval: float
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.base_url = base_url
        self.keepalive_interval = keepalive_interval

    async def get(self, owner: str, name: str) -> None:
        self.start_stream()
        await self.guarded(lambda: self._launch_saved(owner, name))

    async def _launch_saved(self, owner: str, name: str) -> None:
        token = self.user_token()
        image = await self.store.get_image(owner, name)
        if image is None or not may_use(await self.saved_image_viewer(), image):
            raise ServiceError(f"No saved image {owner[:255]}/{name[:255]} you may launch.", 404)
        record = await self.store.get_build(image.build_id) if image.build_id else None
        repo_url = record.repo_url if record is not None else ""
        request = self.launch_request(
            token,
            image.image,
            repo_url,
            {"binder_request": f"v2/saved/{urllib.parse.quote(owner)}/{urllib.parse.quote(name)}"},
        )
        if await self.launch(request, (self.last_event_id() or 0) + 1):
            await self.store.record_use(image.owner, image.name, time.time())


def launch_handlers(
    base_url: str, store: Store, launcher: Launcher, keepalive_interval: float
) -> list[tuple[str, type, dict[str, Any]]]:
    """The launch pages and the saved-image stream (the build route is the application's)."""
    page = {"base_url": base_url}
    return [
        (base_url + r"v2/saved/([^/]+)/([^/]+)", SavedLaunchPageHandler, page),
        (base_url + r"v2/([^/]+)/(.+)", LaunchPageHandler, page),
        (
            base_url + r"launch/saved/([^/]+)/([^/]+)",
            SavedLaunchHandler,
            {
                "store": store,
                "launcher": launcher,
                "base_url": base_url,
                "keepalive_interval": keepalive_interval,
            },
        ),
    ]
