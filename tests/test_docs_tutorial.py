"""The tutorial (docs/source/tutorial/first-build.md), run exactly as written.

Its one shell command runs; every output block it shows must appear in what the
command prints (``<port>``, ``<hash>`` and ``<commit>`` stand for any value);
the ``curl`` line the script prints, which the last step tells the reader to run,
must answer the single event the page shows.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.docs_snippets import code_blocks

PAGE = "tutorial/first-build.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"<(port|hash|commit)>")


def as_pattern(documented: str) -> re.Pattern[str]:
    """A documented output line as a regular expression, placeholders matching any value."""
    parts = PLACEHOLDER.split(documented)
    # split() keeps the placeholder names at odd positions.
    return re.compile(
        "".join(r"[^\s\"']+" if i % 2 else re.escape(part) for i, part in enumerate(parts))
    )


def assert_shown(block: str, output: str) -> None:
    for line in block.splitlines():
        assert as_pattern(line).search(output), f"the page shows {line!r}; printed:\n{output}"


def read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("the script ended early:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise TimeoutError("no " + repr(marker) + " in:\n" + "".join(seen))


@pytest.mark.docker
def test_the_tutorial_as_written(docker_engine: None, base_image: str) -> None:
    [command] = code_blocks(PAGE, "bash")
    shown = [b.body for b in code_blocks(PAGE, "text")]
    assert len(shown) == 4, "the page's output blocks: ready, hello, the last lines, the answer"
    proc = subprocess.Popen(
        ["bash", "-c", command.body],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        output = read_until(lines, "Press Ctrl-C", timeout=900)
        for block in shown[:3]:
            assert_shown(block, output)
        curl = output.split("Ask for the same build again:\n", 1)[1].splitlines()[0].strip()
        assert curl.startswith("curl -sN -H 'Accept: text/event-stream' 'http://127.0.0.1:")
        answer = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        documented = shown[3].strip().splitlines()
        assert [
            as_pattern(line).fullmatch(got) is not None
            for line, got in zip(documented, answer.strip().splitlines(), strict=True)
        ] == [True] * len(documented), answer
        assert proc.poll() is None, "--keep keeps the service running"
    finally:
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stdout.close()
    assert status == 130
    work = re.search(r"log: (/tmp/binderhub-service-example\.\w+)/service\.log", output)
    assert work is not None and not Path(work[1]).exists(), "Ctrl-C removes the example's files"
