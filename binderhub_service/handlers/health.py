"""Operational endpoints: liveness, health, versions and metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ..health import HealthChecker
from .base import BaseHandler


class LivenessHandler(BaseHandler):
    """``GET livez``: 200 while the process serves requests; asks no other service.

    For a liveness (and start-up) probe: a restart cannot fix an outage of the
    registry or the Kubernetes API, so their state belongs to ``health``.
    """

    def auth_required(self) -> bool:
        return False

    def get(self) -> None:
        self.write_json({"ok": True})

    def head(self) -> None:
        self.set_status(200)


class HealthHandler(BaseHandler):
    """``GET health``: 200 when every backend answers, 503 otherwise."""

    def initialize(self, *, checker: HealthChecker) -> None:
        self.checker = checker

    def auth_required(self) -> bool:
        return False

    async def get(self) -> None:
        status = await self.checker.status()
        self.write_json(status, status=200 if status["ok"] else 503)

    async def head(self) -> None:
        status = await self.checker.status()
        self.set_status(200 if status["ok"] else 503)


class VersionsHandler(BaseHandler):
    """``GET versions``: the builder's and this service's versions, as BinderHub reports."""

    def initialize(self, *, versions: dict[str, str]) -> None:
        self.versions = versions

    def auth_required(self) -> bool:
        return False

    def get(self) -> None:
        self.write_json(self.versions)


class MetricsHandler(BaseHandler):
    """``GET metrics``: Prometheus exposition format."""

    def auth_required(self) -> bool:
        return self.service_auth is not None and self.service_auth.metrics_auth_required

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(REGISTRY))
