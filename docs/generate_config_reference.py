"""Write docs/source/reference/configuration.md from the service's configurable traits.

Run from the repository root: ``python docs/generate_config_reference.py``.

Each option is a definition-list entry with its own anchor,
``config-<class>-<option>`` in lower case (e.g. ``config-binderhubservice-port``),
that other pages link to with ``[](#config-binderhubservice-port)``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from jupyterhub.traitlets import EntryPointType
from traitlets import HasTraits, TraitType

from binderhub_service.app import BinderHubService

TARGET = Path(__file__).parent / "source" / "reference" / "configuration.md"


def defined_here(cls: type, name: str) -> bool:
    """Whether this project defines trait ``name`` of ``cls`` (not traitlets' own classes)."""
    owner = next(klass for klass in cls.__mro__ if name in vars(klass))
    return owner.__module__.startswith("binderhub_service")


def computed_default(cls: type[HasTraits], name: str) -> bool:
    """Whether the default is computed at start (``@default``): its help text states it."""
    return any(name in vars(klass).get("_trait_default_generators", {}) for klass in cls.__mro__)


def default_repr(trait: TraitType) -> str:
    """The default as a user writes it: an executor by its entry-point name."""
    if isinstance(trait, EntryPointType):
        value = trait.default_value
        path = f"{value.__module__}:{value.__qualname__}" if isinstance(value, type) else value
        for name, entry_point in trait.load_entry_points().items():
            if path in (name, entry_point.value):
                return repr(name)
    return trait.default_value_repr()


def anchor(cls: type, name: str) -> str:
    return f"config-{cls.__name__}-{name}".lower()


def describe(cls: type[HasTraits], name: str, trait: TraitType) -> list[str]:
    # Entry-point traits append what happens to be installed; leave that out.
    help_text = (trait.help or "").split("Currently installed:")[0]
    help_text = " ".join(inspect.cleandoc(help_text).split())
    if not computed_default(cls, name):
        # Defaults computed from this machine (the Python running it) stay generic.
        default = default_repr(trait).replace(sys.executable, "<python>")
        help_text += f" (default: `{default}`)"
    return [f"({anchor(cls, name)})=", "", f"`c.{cls.__name__}.{name}`", f": {help_text}", ""]


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every option, set in the config file as `c.<Class>.<option> = value`",
        "(`binderhub-service --generate-config` writes a file with all of them, commented out).",
        "Where the default is computed when the service starts, the text says how.",
        "Generated from the code by `docs/generate_config_reference.py`.",
        "",
    ]
    app = BinderHubService()
    seen: set[type] = set()
    for cls in [BinderHubService, *app.all_classes()]:
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
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0]
        lines += [f"## {cls.__name__}", "", " ".join(summary.split()), ""]
        for name, trait in sorted(traits.items()):
            lines += describe(cls, name, trait)
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
