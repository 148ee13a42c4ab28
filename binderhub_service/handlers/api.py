"""REST API v1: build records, their logs, cancellation and saved images.

Every response is JSON (event logs are event streams); errors are
``{"status": N, "message": ...}``. Users see the builds they started or
joined, and the saved images that are theirs or shared with them (see
:mod:`binderhub_service.image_access`); admins see everything; anything else
is answered 404, as if it did not exist. The document at
``api/v1/openapi.json`` describes every route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tornado import web
from tornado.log import app_log

from ..build_requests import BuildRequests
from ..builds import Build
from ..errors import Forbidden, ServiceError, UnknownProvider
from ..events import json_frame
from ..image_access import Viewer, access, may_change, may_use, visible
from ..saved_images import SavedImages
from ..states import BuildState
from ..store import BuildFilter, BuildRecorder, Store
from ..store.models import BuildRecord, SavedImage
from . import api_input
from .base import BaseHandler
from .openapi import openapi_document
from .records import build_json, image_json
from .sse import EventStreamHandler


@dataclass(frozen=True)
class ApiContext:
    """What the API handlers work with."""

    requests: BuildRequests
    store: Store
    recorder: BuildRecorder
    keepalive_interval: float
    base_url: str
    saved_images: SavedImages
    cancel_timeout: float = 60.0


# Stored events read at a time when a finished build's log is replayed.
REPLAY_PAGE = 256


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class ApiHandler(BaseHandler):
    """Shared parts of API handlers: context, identity, record lookup."""

    def initialize(self, *, context: ApiContext) -> None:
        self.ctx = context
        self.manager = context.requests.manager
        self.write_timeout = self.manager.stream_write_timeout

    @property
    def visible_to(self) -> str | None:
        """The user whose records this request may see; None for an admin."""
        identity = self.identity
        return None if identity.is_admin else identity.name

    def build_json(self, record: BuildRecord) -> dict[str, Any]:
        return build_json(record, self.visible_to)

    async def visible_build(self, build_id: str) -> BuildRecord:
        if not api_input.BUILD_ID_PATTERN.match(build_id):
            raise NotFound(f"No build {build_id[:64]!r}.")
        record = await self.ctx.recorder.get_build(build_id, self.visible_to)
        if record is None:
            raise NotFound(f"No build {build_id[:64]!r}.")
        return record


class BuildsHandler(ApiHandler):
    """``GET builds`` lists records; ``POST builds`` asks for an image."""

    async def get(self) -> None:
        where = BuildFilter(
            visible_to=self.visible_to,
            states=api_input.states(self.get_query_arguments("state")),
            requester=api_input.text_argument("user", self.get_query_argument("user", None)),
            repo_url=api_input.text_argument(
                "repository", self.get_query_argument("repository", None)
            ),
            since=api_input.since(self.get_query_argument("since", None)),
            failure_classes=api_input.failure_classes(self.get_query_arguments("failure_class")),
        )
        limit = api_input.limit(self.get_query_argument("limit", None))
        before = api_input.cursor(self.get_query_argument("cursor", None))
        records = await self.ctx.recorder.list_builds(where, before=before, limit=limit)
        more = len(records) == limit
        self.write_json(
            {
                "builds": [self.build_json(r) for r in records],
                "next": str(records[-1].seq) if more else None,
            }
        )

    async def post(self) -> None:
        prefix, spec = api_input.build_request(api_input.json_object(self.request.body))
        try:
            answer = await self.ctx.requests.request(self.identity, prefix, spec)
        except UnknownProvider as e:
            raise api_input.InvalidInput(e.message) from None
        if answer.build is not None:
            self.write_json(self.build_json(await self._record(answer.build)), status=202)
            return
        record = None
        if answer.found_record_id is not None:
            record = await self.ctx.recorder.get_build(answer.found_record_id)
        if record is None:
            raise ServiceError("The image exists, but its record could not be written.", 503)
        self.write_json(self.build_json(record), status=200)

    async def _record(self, build: Build) -> BuildRecord:
        """The stored record of a build, or while it is not stored yet the one in memory."""
        try:
            record = await self.ctx.recorder.get_build(build.id)
        except Exception:
            app_log.exception("Could not read the record of build %s", build.id)
            record = None
        return record or self.ctx.recorder.snapshot(build)


class BuildHandler(ApiHandler):
    """``GET builds/{id}`` shows a record; ``DELETE`` cancels the build, like ``POST cancel``."""

    async def get(self, build_id: str) -> None:
        self.write_json(self.build_json(await self.visible_build(build_id)))

    async def delete(self, build_id: str) -> None:
        await cancel(self, build_id)


class BuildCancelHandler(ApiHandler):
    """``POST builds/{id}/cancel``: stop a queued or running build."""

    async def post(self, build_id: str) -> None:
        await cancel(self, build_id)


async def cancel(handler: ApiHandler, build_id: str) -> None:
    """Cancel a build the caller started (or any, for an admin); answer its final record."""
    await handler.visible_build(build_id)
    await handler.ctx.requests.cancel(
        handler.identity, build_id, timeout=handler.ctx.cancel_timeout
    )
    handler.write_json(handler.build_json(await handler.visible_build(build_id)))


class BuildEventsHandler(ApiHandler, EventStreamHandler):
    """``GET builds/{id}/events``: the build's log as an event stream from ``Last-Event-ID``.

    A build still in memory streams live until it ends; otherwise the stored
    log is replayed, page by page, and the stream closes.
    """

    async def get(self, build_id: str) -> None:
        await self.visible_build(build_id)
        offset = self.last_event_id() or 0
        self.start_stream()
        build = self.manager.get(build_id)
        if build is not None:
            async for chunk in build.stream(offset, keepalive=self.ctx.keepalive_interval):
                await self.send(chunk)
            return
        # Read in small pages and written in bounded chunks, each waiting for the client.
        batch: list[bytes] = []
        size, limit = 0, self.manager.stream_chunk_bytes
        events = self.ctx.recorder.events(build_id, after=offset, page=REPLAY_PAGE)
        async for number, data in events:
            frame = json_frame(number, data)
            if batch and size + len(frame) > limit:
                await self.send(b"".join(batch))
                batch, size = [], 0
            batch.append(frame)
            size += len(frame)
        if batch:
            await self.send(b"".join(batch))


class ImageApiHandler(ApiHandler):
    """Shared parts of the saved-image routes: who is asking, which image they name."""

    viewer: Viewer

    async def prepare(self) -> None:
        await super().prepare()
        if self._finished:
            return
        self.viewer = await self.saved_image_viewer()

    def image_json(self, image: SavedImage) -> dict[str, Any]:
        viewer = self.viewer
        return image_json(image, access(viewer, image), may_change(viewer, image))

    async def named_image(self, name: str) -> SavedImage:
        """The image ``name`` of ``?owner=`` (default: the caller), if the caller may see it."""
        owner = self.get_query_argument("owner", None) or self.identity.name
        if not api_input.IMAGE_NAME_PATTERN.match(name) or not (
            api_input.IMAGE_OWNER_PATTERN.match(owner)
        ):
            raise NotFound(f"No saved image named {name[:255]!r}.")
        image = await self.ctx.store.get_image(owner, name)
        if image is None or not may_use(self.viewer, image):
            raise NotFound(f"No saved image named {name[:255]!r}.")
        return image

    async def changeable_image(self, name: str) -> SavedImage:
        """The image ``name`` names, if the caller may change it (its owner, or an admin)."""
        image = await self.named_image(name)
        if not may_change(self.viewer, image):
            raise Forbidden(
                f"Only its owner ({image.owner}) and admins may change or delete this image."
            )
        return image


class ImagesHandler(ImageApiHandler):
    """``GET images`` lists the saved images the caller may use; ``POST images`` saves one."""

    async def get(self) -> None:
        viewer = self.viewer
        if viewer.is_admin:
            images = await self.ctx.store.list_images()
        else:
            images = visible(viewer, await self.ctx.store.list_shared_images(viewer.name))
        self.write_json({"images": [self.image_json(i) for i in images]})

    async def post(self) -> None:
        request = api_input.image_request(api_input.json_object(self.request.body))
        owner = self.identity.name
        image = request.image
        if request.build_id is not None:
            record = await self.ctx.recorder.get_build(request.build_id, self.visible_to)
            if record is None or record.state != BuildState.SUCCEEDED:
                raise api_input.InvalidInput(
                    f"'build_id' must name a succeeded build of yours: {request.build_id[:64]!r}."
                )
            if image is not None and image != record.image_name:
                raise api_input.InvalidInput("'image' is not the image of build 'build_id'.")
            image = record.image_name
        assert image is not None
        if await self.ctx.store.get_image(owner, request.name) is not None:
            raise Conflict(f"You already have an image named {request.name!r}.")
        await self.ctx.saved_images.check(image)
        saved = await self.ctx.store.save_image(
            {
                "owner": owner,
                "name": request.name,
                "description": request.description,
                "image": image,
                "build_id": request.build_id,
                "created": time.time(),
                "visibility": request.visibility,
                "groups": list(request.groups),
            }
        )
        self.set_header("Location", f"{self.ctx.base_url}api/v1/images/{request.name}")
        self.write_json(self.image_json(saved), status=201)


class ImageHandler(ImageApiHandler):
    """One saved image (``?owner=`` names another user's): ``GET`` it if the caller may use
    it; ``PATCH`` (visibility, groups, description) or ``DELETE`` it as its owner or an admin."""

    async def get(self, name: str) -> None:
        self.write_json(self.image_json(await self.named_image(name)))

    async def patch(self, name: str) -> None:
        change = api_input.image_update(api_input.json_object(self.request.body))
        image = await self.changeable_image(name)
        values = change.values(image.visibility, image.groups)
        updated = await self.ctx.store.update_image(image.owner, image.name, values)
        if updated is None:
            raise NotFound(f"No saved image named {name[:255]!r}.")
        self.write_json(self.image_json(updated))

    async def delete(self, name: str) -> None:
        image = await self.changeable_image(name)
        if not await self.ctx.store.delete_image(image.owner, image.name):
            raise NotFound(f"No saved image named {name[:255]!r}.")
        self.set_status(204)
        self.finish()


class ImageUsesHandler(ImageApiHandler):
    """``POST images/{name}/uses``: count one server started with a saved image the caller
    may use (the spawner helpers send it on behalf of the spawning user)."""

    async def post(self, name: str) -> None:
        image = await self.named_image(name)
        used = await self.ctx.store.record_use(image.owner, image.name, time.time())
        if used is None:
            raise NotFound(f"No saved image named {name[:255]!r}.")
        self.write_json(self.image_json(used))


class OpenApiHandler(ApiHandler):
    """``GET openapi.json``: the OpenAPI 3.1 description of this API."""

    def get(self) -> None:
        self.write_json(openapi_document(self.ctx.base_url + "api/v1"))


class ApiNotFoundHandler(BaseHandler):
    """Any other path under ``api/v1/``: a JSON 404."""

    async def prepare(self) -> None:
        raise web.HTTPError(404, "No such API route.")


def api_handlers(context: ApiContext) -> list[Any]:
    """The API's routes under ``{base_url}api/v1/``."""
    prefix = context.base_url + "api/v1/"
    args = {"context": context}
    return [
        (prefix + "openapi.json", OpenApiHandler, args),
        (prefix + "builds", BuildsHandler, args),
        (prefix + r"builds/([^/]+)", BuildHandler, args),
        (prefix + r"builds/([^/]+)/cancel", BuildCancelHandler, args),
        (prefix + r"builds/([^/]+)/events", BuildEventsHandler, args),
        (prefix + "images", ImagesHandler, args),
        (prefix + r"images/([^/]+)", ImageHandler, args),
        (prefix + r"images/([^/]+)/uses", ImageUsesHandler, args),
        (prefix + ".*", ApiNotFoundHandler),
    ]
