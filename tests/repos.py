"""Test repositories: Dockerfiles that build offline from the local base image."""

from __future__ import annotations

import shlex
import uuid


def dockerfile(base_image: str, *run_lines: str) -> str:
    """A Dockerfile FROM the local base image with one RUN per line."""
    lines = [f"FROM {base_image}", *(f"RUN {line}" for line in run_lines)]
    return "\n".join(lines) + "\n"


def hello_repo(base_image: str, text: str) -> dict[str, str]:
    """A repository whose image prints ``text`` when run."""
    return {
        "Dockerfile": dockerfile(base_image, f"echo {shlex.quote(text)} > /hello.txt")
        + 'CMD ["cat", "/hello.txt"]\n'
    }


def chatty_repo(
    base_image: str, lines: int, batch: int = 500, pause: float = 0.05
) -> dict[str, str]:
    """A repository whose build prints ``lines`` numbered lines, paced for BuildKit."""
    # A fresh RUN line each time, so the layer cache never hides the output.
    script = (
        f"echo build-{uuid.uuid4().hex}; i=1; while [ $i -le {lines} ]; do echo line-$i; "
        f"if [ $((i % {batch})) -eq 0 ]; then sleep {pause}; fi; i=$((i+1)); done"
    )
    return {"Dockerfile": dockerfile(base_image, script)}


def failing_repo(base_image: str) -> dict[str, str]:
    return {"Dockerfile": dockerfile(base_image, "echo about to fail && exit 3")}


def memory_hungry_repo(base_image: str, megabytes: int, *show: str) -> dict[str, str]:
    """A repository whose one build step holds ``megabytes`` MB in memory at once.

    ``tail`` keeps a line without a newline whole, so it holds every byte ``head``
    gives it. ``show`` names files the step prints first (e.g. its cgroup limits).
    It prints ``held-<megabytes>MB`` when it succeeded. A fresh step each time, so
    the layer cache never skips it.
    """
    shown = "".join(f"echo {path}=$(cat {path}); " for path in show)
    script = (
        f"echo step-{uuid.uuid4().hex}; {shown}"
        f"head -c {megabytes * 1000 * 1000} /dev/zero | tail -n 1 > /dev/null && "
        # The quotes keep the printed command line from reading like the output.
        f'echo held-{megabytes}""MB'
    )
    return {"Dockerfile": dockerfile(base_image, script)}
