import importlib.util
from pathlib import Path

GENERATOR = Path(__file__).parents[2] / "docs" / "generate_config_reference.py"


def test_configuration_reference_is_current():
    """docs/source/reference/configuration.md is what the generator writes today."""
    spec = importlib.util.spec_from_file_location("generate_config_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.TARGET.read_text() == generator.render(), (
        "run: python docs/generate_config_reference.py"
    )
