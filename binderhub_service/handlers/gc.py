"""``POST api/v1/gc``: an admin runs registry garbage collection in the running service."""

from __future__ import annotations

from ..errors import Forbidden, InvalidSpec, ServiceError
from ..gc import GcRunner
from .base import BaseHandler

TRUE = ("1", "true", "yes")
FALSE = ("", "0", "false", "no")


class GcHandler(BaseHandler):
    """Runs :class:`~binderhub_service.gc.GarbageCollector` (``?dry_run=true`` deletes
    nothing) and answers its decisions; deleted images are forgotten by the
    found-image cache. Admins only; 409 when the service has no registry."""

    def initialize(self, *, runner: GcRunner | None) -> None:
        self.runner = runner

    async def post(self) -> None:
        if not self.identity.is_admin:
            raise Forbidden("Only admins may run garbage collection.")
        value = (self.get_query_argument("dry_run", "") or "").lower()
        if value not in TRUE + FALSE:
            raise InvalidSpec("dry_run must be true or false.")
        if self.runner is None:
            raise ServiceError("This service has no registry: there is nothing to collect.", 409)
        report = await self.runner.run(dry_run=value in TRUE)
        self.write_json(
            {
                **report.as_json(),
                "dry_run": value in TRUE,
                "deleted": len(report.deleted),
                "deleted_bytes": report.deleted_bytes,
            }
        )
