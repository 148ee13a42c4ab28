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
    page = (tmp_path / "reference" / "configuration.html").read_text()
    # Definition lists with an anchor per option, which other pages link to.
    assert page.count("<dl") > 100
    assert 'id="config-binderhubservice-port"' in page
    assert 'id="config-kubernetesexecutor-namespace"' in page
    howto = (tmp_path / "howto" / "add-to-jupyterhub.html").read_text()
    assert "configuration.html#config-serviceauth-build-scope" in howto


def test_configuration_reference_states_one_default_per_option() -> None:
    """A default computed at start is described by the help text alone, never as ``0``."""
    reference = (DOCS / "source" / "reference" / "configuration.md").read_text()
    entries = reference.split("\n\n`c.")[1:]

    def entry(option: str) -> str:
        [found] = [e for e in entries if e.startswith(f"{option}`")]
        return found.split("\n\n(config-")[0]

    for option in ("port", "ip", "use_registry"):
        assert "(default: `" not in entry(f"BinderHubService.{option}"), entry(option)
        assert entry(f"BinderHubService.{option}").count("Default") == 1
    assert "(default: `" not in entry("ServiceAuth.cookie_secret")
    assert entry("BinderHubService.executor_class").endswith(
        "Default ``local``. (default: `'local'`)"
    )
    assert "## KubernetesExecutor" in reference and "## LocalDockerExecutor" in reference


def test_the_data_folder_is_ignored_by_git() -> None:
    """Running the service from a checkout leaves its data folder out of ``git status``."""
    result = subprocess.run(
        ["git", "check-ignore", "-q", "binderhub-service-data/binderhub-service.sqlite"],
        cwd=DOCS.parent,
    )
    assert result.returncode == 0
