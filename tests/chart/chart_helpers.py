"""Test helpers for the Helm chart: a real helm binary and rendered manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).parents[2] / "helm-chart" / "binderhub-service"
KUBERNETES_VERSION = kubernetes_validate.latest_version()

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary: $BHS_HELM or the one on PATH. Missing helm fails, never skips."""
    path = os.environ.get("BHS_HELM") or shutil.which("helm")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("helm not found: run .ci/install-helm (or set BHS_HELM to a helm binary)")
    return path


@pytest.fixture
def render(helm: str, tmp_path: Path) -> Render:
    """``render(values, release=..., namespace=...)``: the chart's manifests as dicts."""

    def run(
        values: dict[str, Any] | None = None, release: str = "bhs", namespace: str = "binder"
    ) -> list[dict[str, Any]]:
        values_file = tmp_path / f"values-{release}.yaml"
        values_file.write_text(yaml.safe_dump(values or {}))
        result = subprocess.run(
            [
                helm,
                "template",
                release,
                str(CHART),
                "--namespace",
                namespace,
                "--values",
                str(values_file),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


def validate(manifest: dict[str, Any]) -> None:
    """Fail unless a manifest is valid (unknown fields rejected) for the newest Kubernetes."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
