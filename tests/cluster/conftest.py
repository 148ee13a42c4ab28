"""Fixtures of the cluster tests: the service image, the emulated API server, a pod runner."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from cluster_api import ApiServer, emulate_core_resources

from tests.chart.chart_helpers import helm

ROOT = Path(__file__).parents[2]

__all__ = ["api_server", "helm", "service_image"]


@pytest.fixture(scope="session")
def service_image(docker_engine: None) -> str:
    """The service image built by .ci/build-service-image, as CI builds it.

    ``$BHS_TEST_SERVICE_IMAGE`` names an image already built with that script
    (to reuse one while developing); otherwise ``binderhub-service:test`` is built.
    """
    image = os.environ.get("BHS_TEST_SERVICE_IMAGE")
    if image:
        return image
    image = "binderhub-service:test"
    subprocess.run([str(ROOT / ".ci" / "build-service-image"), image], check=True, timeout=1200)
    return image


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
