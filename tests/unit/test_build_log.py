"""A build's log is bounded: cleaned and cut lines, one truncation event, bounded chunks."""

from __future__ import annotations

import json

from binderhub_service.builds import Build, BuildState, LogLimits
from binderhub_service.events import BuildEvent, Phase, failed, ready
from binderhub_service.executors.base import BuildRequest
from binderhub_service.redact import Redactor


def make_build(limits: LogLimits, redact: Redactor | None = None) -> Build:
    request = BuildRequest(
        build_id="b1",
        provider="git",
        repo_url="git://127.0.0.1:9/r.git",
        ref="a" * 40,
        image_name="binder-r:1",
        push=False,
    )
    return Build(request, limits=limits, redact=redact or Redactor())


def messages(build: Build) -> list[str]:
    return [json.loads(f.decode().split("data: ", 1)[1])["message"] for f in build.frames]


async def test_lines_are_cleaned_redacted_and_cut() -> None:
    build = make_build(LogLimits(max_line_length=20), Redactor(["secret-value"]))
    build.append(BuildEvent(Phase.BUILDING, "a\x00b secret-value"))
    build.append(BuildEvent(Phase.BUILDING, "x" * 50))
    assert messages(build) == ["a\ufffdb ***\n", "x" * 20 + "... (31 more characters)\n"]


async def test_the_log_stops_at_its_cap_and_keeps_how_the_build_ended() -> None:
    build = make_build(LogLimits(max_events=10))
    for i in range(100):
        build.append(BuildEvent(Phase.BUILDING, f"line {i}"))
    build.append(BuildEvent(Phase.BUILT, "Built image."))
    build.append(ready("binder-r:1", "Done"))
    build.state = BuildState.SUCCEEDED
    lines = messages(build)
    assert len(lines) == 12
    assert lines[8] == "line 8\n" and lines[9].startswith("Log truncated")
    assert lines[-2:] == ["Built image.\n", "Done\n"]
    assert build.truncated and build.dropped_events == 91


async def test_the_byte_cap_truncates_too() -> None:
    build = make_build(LogLimits(max_bytes=1000))
    for i in range(100):
        build.append(BuildEvent(Phase.BUILDING, f"line {i}"))
    build.append(failed("Build failed: x"))
    assert build.log_bytes < 1000 + 400
    assert sum("Log truncated" in m for m in messages(build)) == 1
    assert messages(build)[-1] == "Build failed: x\n"


async def test_subscribers_read_bounded_chunks() -> None:
    build = make_build(LogLimits(chunk_bytes=256))
    for i in range(200):
        build.append(BuildEvent(Phase.BUILDING, f"line {i}"))
    build.append(failed("Build failed: x"))
    build.state = BuildState.FAILED
    chunks = [chunk async for chunk in build.stream(0)]
    assert all(len(chunk) <= 256 for chunk in chunks)
    assert b"".join(chunks) == b"".join(build.frames)
