"""``GET build/<provider>/<spec>``: BinderHub's build API, as an event stream."""

from __future__ import annotations

from ..builds import Build, BuildManager
from ..errors import Forbidden, InvalidSpec, ServiceError
from ..events import failed, ready
from ..images import ImageLookup
from ..metrics import IMAGE_FOUND_COUNT
from ..naming import image_name
from ..providers.catalog import RepoProviderCatalog
from .accept import accepts_event_stream
from .sse import EventStreamHandler


class BuildHandler(EventStreamHandler):
    """Resolve, find or build, then relay the build's events until it ends.

    Every outcome, errors before any build included, is an event stream with
    HTTP status 200 whose last event is ``ready`` or ``failed``, as BinderHub does.
    """

    def initialize(
        self,
        *,
        manager: BuildManager,
        catalog: RepoProviderCatalog,
        images: ImageLookup,
        image_prefix: str,
        push: bool,
        keepalive_interval: float,
        base_url: str,
    ) -> None:
        self.build_path = base_url + "build/"
        self.manager = manager
        self.catalog = catalog
        self.images = images
        self.image_prefix = image_prefix
        self.push = push
        self.keepalive_interval = keepalive_interval

    def raw_spec(self) -> tuple[str, str]:
        """Provider prefix and spec as sent, before Tornado's unescaping.

        A git spec holds an escaped URL (``%2F``); unescaping the whole path
        would merge it with the ref.
        """
        prefix, _, spec = self.request.path[len(self.build_path) :].partition("/")
        return prefix, spec

    async def get(self, prefix: str, spec: str) -> None:
        self.start_stream()
        try:
            build = await self._find_or_start_build()
        except ServiceError as e:
            await self.send_event(failed(e.message, e.status_code))
            return
        if build is None:
            return
        offset = self.last_event_id() or 0
        async for chunk in build.stream(offset, keepalive=self.keepalive_interval):
            await self.send(chunk)

    async def _find_or_start_build(self) -> Build | None:
        """The build to relay, or None when the image exists (``ready`` already sent)."""
        if not accepts_event_stream(self.request.headers.get("Accept")):
            raise ServiceError("This endpoint only serves text/event-stream.", 406)
        if self.get_query_argument("build_only", "").lower() != "true":
            raise InvalidSpec(
                "This service only builds images: add build_only=true to the request. "
                "Servers are started by JupyterHub."
            )
        if not self.identity.can_build:
            raise Forbidden(
                f"{self.identity.name} may not build images here: the hub token lacks the "
                "build scope."
            )
        prefix, raw_spec = self.raw_spec()
        provider, repo = self.catalog.parse(prefix, raw_spec)
        resolved_ref = await provider.resolve_ref(repo)
        name = image_name(self.image_prefix, repo.slug, resolved_ref)

        build = self.manager.find(name)
        if build is not None and (not build.done or self.last_event_id() is not None):
            return build
        if await self.images.has_image(name):
            IMAGE_FOUND_COUNT.labels(provider=prefix).inc()
            await self.send_event(ready(name, "Done! Found built image"))
            return None
        requester = self.identity.name
        joining = self.manager.find(name)
        if self.user_limits is not None and (joining is None or joining.done):
            self.user_limits.check_new_build(
                self.identity.limit_key, self.manager.count_unfinished(requester)
            )
        return self.manager.request_build(
            provider=prefix,
            repo_url=repo.repo_url,
            ref=resolved_ref,
            image_name=name,
            push=self.push,
            requester=requester,
        )
