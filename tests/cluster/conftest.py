"""Fixtures of the cluster tests: the service image, the emulated API server, a pod runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from cluster_api import ApiServer, emulate_core_resources

from tests.chart.chart_helpers import helm
from tests.service_image import service_image as build_service_image

__all__ = ["api_server", "helm", "service_image"]


@pytest.fixture(scope="session")
def service_image(docker_engine: None) -> str:
    """The service image built by .ci/build-service-image (see tests/service_image.py)."""
    return build_service_image()


@pytest.fixture
async def api_server(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> AsyncIterator[ApiServer]:
    """The emulated Kubernetes API server (kmock) behind TLS, with a service-account token."""
    emulate_core_resources(kmock)
    server = ApiServer(kmock.url, tmp_path / "api-server")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
