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


HOWTO = Path(__file__).parents[2] / "docs" / "source" / "howto" / "install-z2jh.md"


def howto_yaml(first_line: str) -> dict[str, Any]:
    """The YAML block of the Zero to JupyterHub how-to that starts with ``first_line``."""
    text = HOWTO.read_text()
    for block in text.split("```yaml\n")[1:]:
        body = block.split("```", 1)[0]
        if body.startswith(first_line + "\n"):
            loaded: dict[str, Any] = yaml.safe_load(body)
            return loaded
    raise AssertionError(f"no yaml block starting {first_line!r} in {HOWTO}")


def howto_values() -> dict[str, Any]:
    """Step 2 of the how-to: the chart's values."""
    return howto_yaml("# binderhub-service.yaml")


def howto_hub_values() -> dict[str, Any]:
    """Step 4 of the how-to: what goes into the Zero to JupyterHub values."""
    return howto_yaml("# z2jh-values.yaml")


def notes_snippet(notes: str) -> dict[str, Any]:
    """The ``hub:`` snippet the chart's NOTES print, as YAML."""
    start = notes.index("\nhub:\n") + 1
    end = notes.index("\n\n", start)
    loaded: dict[str, Any] = yaml.safe_load(notes[start:end])
    return loaded


def helm_notes(helm: str, values_file: Path, release: str = "bhs", namespace: str = "jhub") -> str:
    """What ``helm install`` prints after NOTES: for these values (a client-side dry run)."""
    result = subprocess.run(
        [
            helm,
            "install",
            release,
            str(CHART),
            "--dry-run=client",
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
    return result.stdout.split("NOTES:", 1)[1]


def helm_template_error(helm: str, values_file: Path) -> str:
    """The error of a ``helm template`` that must fail."""
    result = subprocess.run(
        [helm, "template", "bhs", str(CHART), "--values", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr
