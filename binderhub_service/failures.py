"""Why a build failed: the failure classes, a hint for each, and the classifier.

Every failed build has one :class:`FailureClass`. The classifier reads what the
build's steps printed (the engine's, BuildKit's and repo2docker's output) and
what the executor knows (exit codes, pod status) and picks the class; the
hint shown with it is a fixed text per class, so it never quotes output,
server paths, command lines or anything of another user's.

Output is user-controlled: a step may print anything. Lines that echo the
user's own commands (BuildKit's step headers and "failed running [...]"
summaries) are read for their exit code only, so a command's text never
decides the class; what a step *printed* may, which only ever misleads the
build's own users.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class FailureClass(enum.StrEnum):
    """Why a build failed, as events, records, metrics and the REST API name it."""

    DEPENDENCY_CONFLICT = "dependency_conflict"
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    DISK_FULL = "disk_full"
    NETWORK = "network"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    PUSH_FAILED = "push_failed"
    INVALID_REPOSITORY = "invalid_repository"
    BUILD_ERROR = "build_error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"

    @property
    def transient(self) -> bool:
        """Whether trying the build again soon may well succeed (the service's parts were
        briefly unreachable); never true of what the repository causes."""
        return self in TRANSIENT


TRANSIENT = frozenset(
    {
        FailureClass.ENGINE_UNAVAILABLE,
        FailureClass.REGISTRY_UNAVAILABLE,
        FailureClass.PUSH_FAILED,
    }
)

_OPERATOR = "if it keeps happening, the service's operator must check"

HINTS: dict[FailureClass, str] = {
    FailureClass.DEPENDENCY_CONFLICT: (
        "The packages this repository asks for cannot be installed together. Relax or "
        "change the pinned versions in its environment files (requirements.txt, "
        "environment.yml, ...) until they agree, then build again."
    ),
    FailureClass.OUT_OF_MEMORY: (
        "A build step needed more memory than a build may use{limit}. Make the step need "
        "less (prebuilt packages instead of compiling, fewer packages per step, pinned "
        "versions so the solver has less to do), or ask the operator for a higher limit."
    ),
    FailureClass.TIMEOUT: (
        "A step took longer than this service allows. Make the build faster (fewer or "
        "prebuilt dependencies, no large downloads); if fetching the repository timed "
        "out, check that its host answers, then build again."
    ),
    FailureClass.DISK_FULL: (
        "The build ran out of disk space. Make the image smaller (fewer packages, caches "
        f"cleaned in the same step, no large data files in the repository); {_OPERATOR} "
        "the build machine's free space."
    ),
    FailureClass.NETWORK: (
        "A host could not be reached while fetching or building. Check the addresses the "
        "repository and its build use, and try again later; builds here may have no "
        "network access at all."
    ),
    FailureClass.ENGINE_UNAVAILABLE: (
        "The service's container engine could not be reached; nothing is wrong with the "
        f"repository. Try again later; {_OPERATOR} the engine."
    ),
    FailureClass.REGISTRY_UNAVAILABLE: (
        "The image registry could not be reached; nothing is wrong with the repository. "
        f"Try again later; {_OPERATOR} the registry."
    ),
    FailureClass.PUSH_FAILED: (
        "The image was built but could not be pushed to the registry; nothing is wrong "
        f"with the repository. Try again later; {_OPERATOR} the registry and its "
        "credentials."
    ),
    FailureClass.INVALID_REPOSITORY: (
        "The repository cannot be built as it is: check that its address and commit exist "
        "and are public, and that its files are ones this service builds (the log above "
        "says what was refused)."
    ),
    FailureClass.BUILD_ERROR: (
        "A step of the repository's own build failed. The log above shows the step and "
        "its output: fix that step (its command, or the file it uses), then build again."
    ),
    FailureClass.CANCELLED: "The build was cancelled; ask for it again to build it.",
    FailureClass.INTERRUPTED: (
        "The service stopped while the build ran; nothing is wrong with the repository. "
        "Ask for it again."
    ),
    FailureClass.UNKNOWN: (
        "The service could not tell why the build failed. Look for an error in the log "
        "above; if there is none of the repository's, ask the operator, naming the build."
    ),
}


def format_bytes(value: int) -> str:
    """A byte count as people read it, e.g. ``2 GiB`` or ``512 MiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value} bytes"


def hint(failure_class: FailureClass, memory_limit: int | str | None = None) -> str:
    """The hint for ``failure_class``; ``memory_limit`` (bytes, or a text such as ``4Gi``)
    is named in the hint of ``out_of_memory`` when given."""
    if failure_class is not FailureClass.OUT_OF_MEMORY:
        return HINTS[failure_class]
    limit = ""
    if isinstance(memory_limit, int) and memory_limit > 0:
        limit = f" ({format_bytes(memory_limit)})"
    elif isinstance(memory_limit, str) and re.fullmatch(r"[0-9.]+ ?[A-Za-z]{0,3}", memory_limit):
        limit = f" ({memory_limit})"
    return HINTS[failure_class].format(limit=limit)


def parse_failure_class(value: object) -> FailureClass | None:
    """``value`` as a failure class, or None when it names none."""
    try:
        return FailureClass(value) if isinstance(value, str) else None
    except ValueError:
        return None


class Step(enum.StrEnum):
    """The step of a build whose output is read: what a failure there can mean differs."""

    FETCH = "fetch"
    BUILD = "build"
    PUSH = "push"


# What each class's output says, in lower case (a line is compared in lower case too).
# What the engine's or the service's docker CLI says when no engine answers.
ENGINE_DOWN = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "failed to connect to the docker api",
    "error during connect",
    "docker commandline client must be installed",
    "error while fetching server api version",
    "dial unix ",
)
OUT_OF_MEMORY = (
    "exit code: 137",
    "exit status 137",
    "signal: killed",
    "oomkilled",
    "out of memory",
    "cannot allocate memory",
    "memoryerror",
    "std::bad_alloc",
)
DISK_FULL = (
    "no space left on device",
    "enospc",
    "disk quota exceeded",
    "not enough space",
    "not enough free space",
    "not enough disk space",
)
DEPENDENCY_CONFLICT = (
    "resolutionimpossible",
    "libmambaunsatisfiableerror",
    "unsatisfiableerror",
    "could not solve for environment specs",
    "conflicting dependencies",
    "the conflict is caused by",
    "found conflicts!",
)
# Also said when the network is the cause (an index that cannot be reached lists nothing).
MISSING_PACKAGE = (
    "no matching distribution found",
    "could not find a version that satisfies the requirement",
    "packagesnotfounderror",
    "nothing provides",
    "unable to locate package",
)
NETWORK = (
    "could not resolve host",
    "temporary failure in name resolution",
    "name or service not known",
    "no such host",
    "network is unreachable",
    "connection timed out",
    "connection refused",
    "connection reset by peer",
    "failed to establish a new connection",
    "read timed out",
    "i/o timeout",
    "unable to connect",
    "condahttperror",
    "remote end hung up unexpectedly",
    "early eof",
)
REGISTRY_DOWN = (
    *NETWORK,
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "gateway time-out",
)
INVALID_REPOSITORY = (
    "dockerfile parse error",
    "unknown instruction",
    "failed to read dockerfile",
    "failed to resolve source metadata",
    "pull access denied",
    "manifest unknown",
    "repository not found",
    "couldn't find remote ref",
    "not our ref",
    "does not appear to be a git repository",
    "authentication failed",
)
# A step of the user's build ended with a status (BuildKit, old and new, and repo2docker).
STEP_FAILED = re.compile(
    r"(?:did not complete successfully|executor failed running \[.*\]): exit code: (\d+)"
    r"|returned non-zero exit status (-?\d+)",
    re.DOTALL,
)
# Lines that quote the user's commands: BuildKit's step headers and error summaries.
_STEP_HEADER = re.compile(r"^(?:#\d+ )?(?:> )?\[[^\]]*\] [A-Z]+ |^\s*>\s*\[|^\s*\d+ \| ")
_QUOTED_COMMAND = re.compile(r'executor failed running \[.*\]|process ".*" did not', re.DOTALL)

Rule = tuple[FailureClass, tuple[str, ...]]
# Rules in order of precedence: the first that matched decides.
_BUILD_RULES: tuple[Rule, ...] = (
    (FailureClass.ENGINE_UNAVAILABLE, ENGINE_DOWN),
    (FailureClass.OUT_OF_MEMORY, OUT_OF_MEMORY),
    (FailureClass.DISK_FULL, DISK_FULL),
    (FailureClass.DEPENDENCY_CONFLICT, DEPENDENCY_CONFLICT),
    (FailureClass.NETWORK, NETWORK),
    (FailureClass.DEPENDENCY_CONFLICT, MISSING_PACKAGE),
    (FailureClass.INVALID_REPOSITORY, INVALID_REPOSITORY),
)
_FETCH_RULES: tuple[Rule, ...] = (
    (FailureClass.DISK_FULL, DISK_FULL),
    (FailureClass.INVALID_REPOSITORY, INVALID_REPOSITORY),
    (FailureClass.NETWORK, NETWORK),
)
_PUSH_RULES: tuple[Rule, ...] = (
    (FailureClass.ENGINE_UNAVAILABLE, ENGINE_DOWN),
    (FailureClass.DISK_FULL, DISK_FULL),
    (FailureClass.REGISTRY_UNAVAILABLE, REGISTRY_DOWN),
)
_RULES = {Step.FETCH: _FETCH_RULES, Step.BUILD: _BUILD_RULES, Step.PUSH: _PUSH_RULES}
# What each step's failure is when no rule matched.
_FALLBACK = {
    Step.FETCH: FailureClass.INVALID_REPOSITORY,
    Step.BUILD: FailureClass.UNKNOWN,
    Step.PUSH: FailureClass.PUSH_FAILED,
}
# Longest part of a line that is read (the rest cannot matter to a rule).
_MAX_SCANNED = 4096


def readable_part(line: str) -> str:
    """What of an output line may decide a class: without the user's quoted commands."""
    line = line[:_MAX_SCANNED]
    if _STEP_HEADER.search(line):
        return ""
    return _QUOTED_COMMAND.sub(" ", line)


@dataclass
class _Seen:
    line: int = -1


class OutputClassifier:
    """Reads one step's output, line by line, and names the class of its failure.

    Only the last ``window`` lines count (a warning long before the failure is
    not its cause); memory stays constant whatever the output's length.
    """

    def __init__(self, step: Step, window: int = 200) -> None:
        self.step = step
        self.window = window
        self.lines = 0
        self._rules = _RULES[step]
        self._seen = [_Seen() for _ in self._rules]
        self._step_status: int | None = None
        self._step_status_line = -1

    def feed(self, text: str) -> None:
        """Read one line (or a few) of the step's output."""
        for line in text.splitlines() or [""]:
            self.lines += 1
            status = STEP_FAILED.search(line[:_MAX_SCANNED])
            if status is not None:
                self._step_status = int(status.group(1) or status.group(2))
                self._step_status_line = self.lines
            readable = readable_part(line).lower()
            if not readable.strip():
                continue
            for seen, (_, keywords) in zip(self._seen, self._rules, strict=True):
                if any(keyword in readable for keyword in keywords):
                    seen.line = self.lines

    def feed_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)

    def _recent(self, line: int) -> bool:
        return line >= 0 and self.lines - line < self.window

    def classify(self, exit_code: int | None = None) -> FailureClass:
        """The class of this step's failure; ``exit_code`` is the step's process's, if known.

        A build whose process was killed by SIGKILL (137, or -9 as Python reports
        it) ran out of memory unless its output says otherwise.
        """
        for seen, (failure_class, _) in zip(self._seen, self._rules, strict=True):
            if self._recent(seen.line):
                return failure_class
        if self.step is Step.BUILD and self._recent(self._step_status_line):
            if self._step_status == 137:
                return FailureClass.OUT_OF_MEMORY
            return FailureClass.BUILD_ERROR
        if self.step is Step.BUILD and exit_code in (137, -9):
            return FailureClass.OUT_OF_MEMORY
        return _FALLBACK[self.step]


def classify_output(step: Step, lines: Iterable[str], exit_code: int | None = None) -> FailureClass:
    """The class of a failed step whose whole output is ``lines``."""
    classifier = OutputClassifier(step)
    classifier.feed_all(lines)
    return classifier.classify(exit_code)
