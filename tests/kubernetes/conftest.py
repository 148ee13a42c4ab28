"""Fixtures for the Kubernetes executor tests: manifest validation, an emulated API server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

KUBERNETES_VERSION = kubernetes_validate.latest_version()


@pytest.fixture
def assert_valid() -> Callable[[dict[str, Any]], None]:
    """Fail unless a manifest is valid (unknown fields rejected) for the newest Kubernetes."""

    def check(manifest: dict[str, Any]) -> None:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)

    return check
