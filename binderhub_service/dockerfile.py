"""Dockerfile instructions the build engine would run outside the build's network.

BuildKit fetches an ``ADD`` source given as a URL (``http://``, ``https://``, a git
URL) itself, in the engine's network namespace: ``--network=none`` on the build
does not apply to it, so such a fetch reaches whatever the engine's host reaches.
A ``# syntax=`` directive makes BuildKit run a frontend image of the Dockerfile's
choosing, which can ask for the same fetches without an ``ADD`` line. Both are
refused before anything is built; a repository fetches files with ``RUN``, inside
the build's own network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from .errors import BuildFailed
from .failures import FailureClass

# Where repo2docker's Docker buildpack looks for a Dockerfile.
DOCKERFILE_PATHS = ("binder/Dockerfile", ".binder/Dockerfile", "Dockerfile")
# A Dockerfile larger than this is refused rather than read.
MAX_DOCKERFILE_BYTES = 1024 * 1024

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_REMOTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[\w.-]+@[\w.-]+:)")


class RefusedDockerfile(BuildFailed):
    """A Dockerfile asks the engine to fetch something itself; nothing was built."""

    failure_class = FailureClass.INVALID_REPOSITORY


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    line: int
    keyword: str
    arguments: str


def parser_directives(text: str) -> dict[str, str]:
    """The parser directives (``# syntax=``, ``# escape=``...) at the top of a Dockerfile."""
    directives: dict[str, str] = {}
    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if not match:
            break
        directives[match.group(1).lower()] = match.group(2)
    return directives


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, as BuildKit's parser splits them.

    Comment and empty lines are dropped (also inside continuations); a line ending with the
    escape character (``\\`` or the ``# escape=`` directive's) continues on the next.
    """
    escape = parser_directives(text).get("escape", "\\")[:1] or "\\"
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if not pending:
            start = number
        if stripped.endswith(escape):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        keyword, _, arguments = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), arguments.strip()))
    if pending:
        joined = " ".join(part.strip() for part in pending).strip()
        keyword, _, arguments = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), arguments.strip()))
    return found


def add_sources(arguments: str) -> list[str]:
    """The sources of an ``ADD`` instruction's arguments (flags and destination removed)."""
    words: list[str]
    rest = arguments
    while rest.startswith("--"):
        _, _, rest = rest.partition(" ")
        rest = rest.lstrip()
    if rest.startswith("<<"):
        return []
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(w, str) for w in parsed):
            words = parsed
        else:
            words = rest.split()
    else:
        words = rest.split()
    return words[:-1]


def refused_adds(text: str) -> list[tuple[int, str]]:
    """``(line, source)`` of every ``ADD`` source the engine would fetch itself.

    Remote URLs and git addresses are refused, and so is any source holding a
    variable (``$URL``), since its value is only known while building.
    """
    refused = []
    for instruction in instructions(text):
        if instruction.keyword != "ADD":
            continue
        for source in add_sources(instruction.arguments):
            if _REMOTE.match(source) or "$" in source:
                refused.append((instruction.line, source))
    return refused


def check_dockerfile_text(text: str, name: str) -> None:
    """Raise :class:`RefusedDockerfile` if the Dockerfile ``name`` would fetch outside the build."""
    if "syntax" in parser_directives(text):
        raise RefusedDockerfile(
            f"{name} names a BuildKit frontend with a '# syntax=' directive, which this "
            "service does not run: remove the directive to build with the engine's own "
            "Dockerfile parser."
        )
    refused = refused_adds(text)
    if refused:
        line, source = refused[0]
        shown = source if len(source) <= 120 else source[:117] + "..."
        raise RefusedDockerfile(
            f"{name} line {line}: ADD {shown} is refused: the engine would fetch it outside "
            "the build's network. Fetch files with RUN (for example RUN curl -fLo FILE URL), "
            "which runs inside the build's network, or COPY them from the repository."
        )


def check_dockerfiles(root: str) -> None:
    """Check every Dockerfile repo2docker could build in the checkout at ``root``."""
    for name in DOCKERFILE_PATHS:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        if os.path.getsize(path) > MAX_DOCKERFILE_BYTES:
            raise RefusedDockerfile(
                f"{name} is larger than {MAX_DOCKERFILE_BYTES // 1024} KiB; it was not built."
            )
        with open(path, encoding="utf-8", errors="replace") as f:
            check_dockerfile_text(f.read(), name)
