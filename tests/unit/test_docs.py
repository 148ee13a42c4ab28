"""The generated reference pages are current, and the docs build without a warning."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"


def load_generator(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator


@pytest.mark.parametrize("name", ["generate_config_reference", "generate_api_reference"])
def test_generated_reference_is_current(name: str) -> None:
    """docs/source/reference/*.md are what their generators write today."""
    generator = load_generator(name)
    assert generator.TARGET.read_text() == generator.render(), f"run: python docs/{name}.py"


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W``: every page in a toctree, every link and anchor resolves."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(DOCS / "source"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
