"""The one place that speaks repo2docker: its arguments and its JSON log protocol.

Both executors (local subprocess and Kubernetes build pod) build their command
with :func:`build_args` and read its output with :func:`parse_log_line`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .events import BuildEvent, Phase
from .failures import FailureClass, parse_failure_class

# The content provider repo2docker uses for git repositories.
GIT_CONTENT_PROVIDER = "repo2docker.contentproviders.Git"
# repo2docker marks a fatal error with one of these phases.
_FAILURE_PHASES = frozenset({"failed", "failure"})
_FAILED_COMMAND = re.compile(r"Command '.*' returned non-zero exit status (-?\d+)", re.DOTALL)
# What users are told when repo2docker reports any other failure: its own text may
# quote files it read (a linked runtime.txt...) and names paths; it stays out.
GENERIC_FAILURE = "repo2docker could not build this repository; the build log above shows why."


@dataclass(frozen=True)
class Repo2DockerOptions:
    """Everything that decides repo2docker's command line for one build.

    ``repo_url`` and ``ref`` come from a validated provider, ``image_name`` from
    :mod:`binderhub_service.naming`; nothing here is taken from a request as is.
    """

    repo_url: str
    ref: str
    image_name: str
    push: bool = False
    user_id: int = 1000
    user_name: str = "jovyan"
    config_file: str | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def build_args(options: Repo2DockerOptions) -> list[str]:
    """repo2docker's arguments (without the executable) for one build."""
    args = ["--no-run", "--json-logs"]
    if options.config_file:
        args += ["--config", options.config_file]
    args += [
        "--user-id",
        str(options.user_id),
        "--user-name",
        options.user_name,
        "--ref",
        options.ref,
        "--image-name",
        options.image_name,
    ]
    if options.push:
        args.append("--push")
    args += list(options.extra_args)
    # The repository is a positional argument; "--" keeps it from ever being
    # read as an option, whatever validation let through.
    args += ["--", options.repo_url]
    return args


@dataclass(frozen=True)
class LogLine:
    """One parsed line of repo2docker output.

    ``failure`` is set when repo2docker reported a fatal error on this line;
    its message becomes the build's failure reason instead of an event.
    ``failure_class`` is the class a build pod's program gave that failure, if
    any; ``text`` is the line's message as it came, for the failure classifier
    only (it is never shown: a failure message may name paths).
    """

    event: BuildEvent | None
    failure: str | None = None
    failure_class: FailureClass | None = None
    text: str = ""


def user_facing_failure(message: str) -> str:
    """A fixed text for repo2docker's failure message; the message itself is never shown.

    repo2docker reports a failed image build as ``Command '[...]' returned
    non-zero exit status N``: only the status is kept. Any other failure text
    (an exception's message) may quote what repo2docker read, so users get one
    fixed sentence and the build's own output above it.
    """
    command = _FAILED_COMMAND.search(message)
    if command:
        return (
            f"The image build stopped with exit status {command.group(1)}; "
            "the build log above shows the step that failed."
        )
    return GENERIC_FAILURE


def parse_log_line(line: str) -> LogLine:
    """Parse one line of ``repo2docker --json-logs`` output.

    Only ``message`` and ``phase`` are taken from a JSON line: other fields
    (repo2docker adds ``exc_info`` tracebacks) stay out of the stream. Lines
    that are not JSON objects become ``unknown`` events.
    """
    stripped = line.rstrip("\r\n")
    try:
        data = json.loads(stripped)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return LogLine(BuildEvent(Phase.UNKNOWN, stripped), text=stripped)
    message = data.get("message")
    if not isinstance(message, str):
        message = "" if message is None else str(message)
    phase_name = data.get("phase")
    if phase_name in _FAILURE_PHASES:
        return LogLine(
            None,
            failure=user_facing_failure(message),
            failure_class=parse_failure_class(data.get("failure_class")),
            text=message,
        )
    try:
        phase = Phase(phase_name) if phase_name is not None else None
    except ValueError:
        phase = Phase.UNKNOWN
    if phase is not None and phase.service_only:
        # Only this service declares a build ready or failed, or a server launching.
        phase = Phase.UNKNOWN
    return LogLine(BuildEvent(phase, message), text=message)
