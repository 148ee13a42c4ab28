"""Hub-side helper: build the repository a user asked for before their server starts.

Configure it in ``jupyterhub_config.py``::

    from binderhub_service.spawner import BinderHubBuildHook

    c.Spawner.pre_spawn_hook = BinderHubBuildHook(
        service_url="http://127.0.0.1:8000/services/binder/",
        api_token=os.environ["BINDERHUB_SERVICE_HOOK_TOKEN"],
    )

When a spawn's ``user_options`` carry ``repo`` (and optionally ``ref`` and
``provider``), the hook asks the service to build it on behalf of the spawning
user (a JSON ``POST api/v1/builds``: the options travel in the body, never in
the URL), follows the build's event stream until ``ready`` and sets the
spawner's ``image`` (and notes it in the spawn's ``user_options`` as
``binderhub_service_image``, for garbage collection). A failed build fails the
spawn with the build's reason.

The hook authenticates with its own hub token, which needs the service's access
scope and its admin scope: the admin scope is what lets it name the user the
build is for (``on_behalf_of``), so the build is recorded for, and limited per,
that user.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from .auth import ON_BEHALF_OF_ARGUMENT
from .hub_servers import IMAGE_OPTION


class ImageBuildError(web.HTTPError):
    """The service did not produce an image; the message says why.

    An HTTP error, so that JupyterHub shows the reason to the user (in the
    spawn's progress and in its API's answer) rather than a generic error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(500, message.replace("%", "%%"))
        self.message = message

    def __str__(self) -> str:
        return self.message


def build_request(repo: str, ref: str = "", provider: str = "git") -> dict[str, str]:
    """The JSON body of ``POST api/v1/builds`` for a repository at a ref.

    For ``git`` the repository is a URL (``{"repo_url", "ref"}``); other
    providers take their own spec (``gh``: ``org/repo``), with the ref appended
    as its last segment. The service validates every part.
    """
    ref = ref or "HEAD"
    if provider == "git":
        return {"repo_url": repo, "ref": ref}
    return {"provider": provider, "spec": f"{repo.strip('/')}/{urllib.parse.quote(ref, safe='')}"}


def image_name_regex(image_prefix: str) -> str:
    """A regex matching exactly the image names this service makes with ``image_prefix``.

    For KubeSpawner's ``unlisted_choice.validation_regex``, so that users may
    only pick images this service built (see :func:`binderhub_service.naming.image_name`).
    """
    return "^" + re.escape(image_prefix.lower()) + r"[a-z0-9-]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


def record_image(spawner: Any, image: str) -> None:
    """Note ``image`` in the spawn's ``user_options``, where the hub's REST API shows it.

    Garbage collection reads it there to keep the images of running servers. The
    options are stored too (as JupyterHub stores them), so a hub restart keeps it.
    """
    options = {**(spawner.user_options or {}), IMAGE_OPTION: image}
    spawner.user_options = options
    orm_spawner = getattr(spawner, "orm_spawner", None)
    if orm_spawner is not None:
        orm_spawner.user_options = options


class SSEParser:
    """Turns chunks of a Server-Sent Event stream into the JSON objects of its events."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.on_event = on_event
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            data = [
                line[5:].lstrip()
                for line in block.decode("utf8", "replace").split("\n")
                if line.startswith("data:")
            ]
            if data:
                self.on_event(json.loads("\n".join(data)))


class BinderHubBuildHook(LoggingConfigurable):
    """A ``Spawner.pre_spawn_hook`` that builds ``user_options['repo']`` into ``spawner.image``.

    Works with any spawner that has an ``image`` trait (KubeSpawner,
    DockerSpawner, ...). Spawns without ``repo`` in their options are left alone.
    """

    service_url = Unicode(
        help="""URL of binderhub-service as the hub reaches it, e.g.
        ``http://127.0.0.1:8000/services/binder/`` (through the hub's proxy) or the
        service's own address (``http://binderhub-service:8585/services/binder/``).""",
    ).tag(config=True)

    api_token = Unicode(
        help="""Hub token the hook authenticates with; it needs
        ``access:services!service=<name>`` and the service's admin scope. Default:
        ``$BINDERHUB_SERVICE_HOOK_TOKEN``.""",
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("BINDERHUB_SERVICE_HOOK_TOKEN", "")

    build_timeout = Float(
        3600.0,
        help="Seconds to wait for the build before failing the spawn. Default 3600.",
    ).tag(config=True)

    def api_url(self, path: str, **query: str) -> str:
        url = f"{self.service_url.rstrip('/')}/api/v1/{path}"
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.api_token}"}

    async def __call__(self, spawner: Any) -> None:
        options = spawner.user_options or {}
        repo = options.get("repo")
        if not repo:
            return
        if not spawner.has_trait("image"):
            raise TypeError(f"{type(spawner).__name__} has no image trait to set")
        body = build_request(
            str(repo), str(options.get("ref") or ""), str(options.get("provider") or "git")
        )
        user = spawner.user.name
        self.log.info("Building %s for %s before spawning", body, user)
        image = await self.build(user, body)
        self.log.info("Built %s for %s: %s", body, user, image)
        spawner.image = image
        record_image(spawner, image)

    async def build(self, user: str, body: dict[str, str]) -> str:
        """Ask for the build of ``body`` for ``user``, follow it; the image, or ImageBuildError."""
        client = AsyncHTTPClient(force_instance=True)
        try:
            record = await self._request_build(client, user, body)
            if record.get("state") == "succeeded" and record.get("image_name"):
                return str(record["image_name"])
            return await self._follow(client, str(record["id"]))
        finally:
            client.close()

    async def _request_build(
        self, client: AsyncHTTPClient, user: str, body: dict[str, str]
    ) -> dict[str, Any]:
        request = HTTPRequest(
            self.api_url("builds", **{ON_BEHALF_OF_ARGUMENT: user}),
            method="POST",
            body=json.dumps(body),
            headers={**self._headers, "Content-Type": "application/json"},
            request_timeout=self.build_timeout,
            follow_redirects=False,
        )
        try:
            response = await client.fetch(request)
        except HTTPClientError as e:
            raise ImageBuildError(self._refusal(e)) from None
        record: dict[str, Any] = json.loads(response.body)
        return record

    @staticmethod
    def _refusal(error: HTTPClientError) -> str:
        """The service's reason for refusing a request, from its JSON error."""
        try:
            message = json.loads(error.response.body)["message"] if error.response else ""
        except (ValueError, KeyError, TypeError):
            message = ""
        return f"The image build service answered {error.code}" + (
            f": {message}" if message else "."
        )

    async def _follow(self, client: AsyncHTTPClient, build_id: str) -> str:
        """Follow a build's event stream until it ends; the image, or ImageBuildError."""
        events: list[dict[str, Any]] = []
        parser = SSEParser(events.append)
        request = HTTPRequest(
            self.api_url(f"builds/{urllib.parse.quote(build_id, safe='')}/events"),
            headers={**self._headers, "Accept": "text/event-stream"},
            streaming_callback=parser.feed,
            request_timeout=self.build_timeout,
            follow_redirects=False,
        )
        try:
            await client.fetch(request)
        except HTTPClientError as e:
            raise ImageBuildError(self._refusal(e)) from None
        for event in events:
            if event.get("phase") == "ready" and event.get("imageName"):
                return str(event["imageName"])
            if event.get("phase") == "failed":
                raise ImageBuildError(event.get("message", "The image build failed.").strip())
        raise ImageBuildError("The image build service ended the stream without an image.")
