"""The package's imports run one way: each module imports only from its own layer or below.

The imports are read with :mod:`ast` from the source files, so nothing is
imported to check them. Imports under ``if TYPE_CHECKING:`` are annotations,
not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "binderhub_service"

# Top to bottom; names are the package's top-level modules and subpackages.
LAYERS: list[tuple[str, set[str]]] = [
    ("composition roots", {"app", "__main__", "gc_command"}),
    ("HTTP handlers", {"handlers"}),
    (
        "request services",
        {"build_requests", "restart", "gc", "startup", "launch", "saved_images"},
    ),
    ("repository providers", {"providers"}),
    ("builds", {"builds"}),
    (
        "executors and the build steps",
        {
            "executors",
            "fetch",
            "content_fetch",
            "checkout",
            "dockerfile",
            "build_container",
            "pod_build",
            "step_limits",
            "engine_storage",
        },
    ),
    ("store", {"store"}),
    (
        "shared parts",
        {
            "__init__",
            "auth",
            "docker_config",
            "engine_api",
            "errors",
            "events",
            "failures",
            "gc_policy",
            "git_credentials",
            "health",
            "hub_groups",
            "hub_servers",
            "image_access",
            "images",
            "launch_paths",
            "limits",
            "log",
            "metrics",
            "naming",
            "netguard",
            "redact",
            "registry",
            "repo2docker",
            "saved_image_choices",
            "singleflight",
            "spawner",
            "states",
            "text",
        },
    ),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def top_level(path: Path) -> str:
    """The package part a source file belongs to: ``handlers`` for ``handlers/api.py``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node):
            found.extend(n for child in node.orelse for n in runtime_imports_of(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        found.extend(runtime_imports(node))
    return found


def runtime_imports_of(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    own = [node] if isinstance(node, ast.Import | ast.ImportFrom) else []
    return own + runtime_imports(node)


def imported_parts(path: Path) -> set[str]:
    """The package parts (top-level modules or subpackages) that ``path`` imports at run time."""
    module_parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module_parts[:-1]
    parts: set[str] = set()
    for node in runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                names = [alias.name for alias in node.names]
                # `from .. import x` names a module of the package, or a name in __init__.
                if not target:
                    parts.update(n if (PACKAGE / f"{n}.py").exists() else "__init__" for n in names)
                    continue
                parts.add(target[0])
            elif node.module and node.module.split(".")[0] == PACKAGE.name:
                dotted = node.module.split(".")
                parts.add(dotted[1] if len(dotted) > 1 else "__init__")
        else:
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == PACKAGE.name:
                    parts.add(dotted[1] if len(dotted) > 1 else "__init__")
    parts.discard(top_level(path))
    return parts


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in a layer before the test can check it."""
    unplaced = sorted({top_level(p) for p in SOURCES} - set(RANK))
    assert unplaced == [], f"add these to LAYERS: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path: Path) -> None:
    """No module imports from a layer above its own."""
    own = top_level(path)
    upward = sorted(part for part in imported_parts(path) if RANK.get(part, 0) < RANK[own])
    assert upward == [], f"{own} ({LAYERS[RANK[own]][0]}) imports {upward}"


def test_checker_reads_relative_and_type_only_imports() -> None:
    """The parser itself: a relative import is resolved, a TYPE_CHECKING import is not counted."""
    source = PACKAGE / "store" / "recorder.py"
    assert "builds" not in imported_parts(source)
    assert "builds" in ast.dump(ast.parse(source.read_text()))
    assert {"states", "events", "auth"} <= imported_parts(source)
    assert "executors" in imported_parts(PACKAGE / "builds.py")
