"""Write docs/source/reference/configuration.md from the service's configurable traits.

Run from the repository root: ``python docs/generate_config_reference.py``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from binderhub_service.app import BinderHubService
from binderhub_service.executors.kubernetes import KubernetesExecutor

TARGET = Path(__file__).parent / "source" / "reference" / "configuration.md"


def defined_here(cls: type, name: str) -> bool:
    """Whether this project defines trait ``name`` of ``cls`` (not traitlets' own classes)."""
    owner = next(klass for klass in cls.__mro__ if name in vars(klass))
    return owner.__module__.startswith("binderhub_service")


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every option, set in the config file as `c.<Class>.<option> = value`.",
        "Generated from the code by `docs/generate_config_reference.py`.",
        "",
    ]
    seen: set[type] = set()
    # KubernetesExecutor is loaded only when chosen (its client is slow to import),
    # so the application's own class list leaves it out.
    for cls in [BinderHubService, *BinderHubService.classes, KubernetesExecutor]:
        if cls in seen:
            continue
        seen.add(cls)
        traits = {
            name: trait
            for name, trait in cls.class_traits(config=True).items()
            if defined_here(cls, name)
        }
        if not traits:
            continue
        lines += [f"## {cls.__name__}", ""]
        for name, trait in sorted(traits.items()):
            # Defaults computed from this machine (the Python running it) stay generic.
            default = trait.default_value_repr().replace(sys.executable, "<python>")
            # Entry-point traits append what happens to be installed; leave that out.
            help_text = (trait.help or "").split("Currently installed:")[0]
            help_text = " ".join(inspect.cleandoc(help_text).split())
            lines += [f"`c.{cls.__name__}.{name}`", f": {help_text} (default: `{default}`)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
