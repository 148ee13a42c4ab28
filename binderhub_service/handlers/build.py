"""``GET build/<provider>/<spec>``: BinderHub's build API, as an event stream."""

from __future__ import annotations

from tornado.log import app_log

from ..build_requests import BuildRequests
from ..builds import Build
from ..errors import InvalidSpec, ServiceError
from ..events import failed, ready
from .accept import accepts_event_stream
from .sse import EventStreamHandler


class BuildHandler(EventStreamHandler):
    """Resolve, find or build, then relay the build's events until it ends.

    Every outcome, errors before any build included, is an event stream with
    HTTP status 200 whose last event is ``ready`` or ``failed``, as BinderHub does.
    """

    def initialize(
        self, *, requests: BuildRequests, keepalive_interval: float, base_url: str
    ) -> None:
        self.build_path = base_url + "build/"
        self.requests = requests
        self.keepalive_interval = keepalive_interval
        self.write_timeout = requests.manager.stream_write_timeout

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
        except Exception:
            # The stream has started: an unexpected error still ends it with an event.
            app_log.exception("Unexpected error answering %s", self.request.path)
            await self.send_event(
                failed("An internal error stopped the request; the service's log has details.", 500)
            )
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
        answer = await self.requests.request(
            self.identity, *self.raw_spec(), resume=self.last_event_id() is not None
        )
        if answer.build is None:
            await self.send_event(ready(answer.target.image_name, "Done! Found built image"))
        return answer.build
