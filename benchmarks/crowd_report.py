"""The "A crowd on one link" section of ``docs/source/benchmarks.md``, from its results.

``python -m benchmarks.crowd`` writes the section after each run; ``python -m
benchmarks.run`` keeps the last crowd results and writes the section again when it
rewrites the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADING = "## A crowd on one link"


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def section(crowd: dict[str, Any]) -> str:
    """The section's Markdown for one ``crowd`` entry of ``benchmarks/results.json``."""
    targets = crowd["targets"]
    rows = [
        "| `resolved_ref_seconds` | ls-remote runs (streams) | streams `ready` "
        "| stream p50 / p99 ms | by branch p50 / p99 ms | by sha p50 / p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("default", "reuse_10s"):
        run = crowd[key]
        c, branch, sha = run["crowd"], run["by_branch"], run["by_sha"]
        lookups = branch["ls_remote_calls"]
        rows.append(
            f"| {run['resolved_ref_seconds']:g}{' (default)' if key == 'default' else ''} "
            f"| {c['ls_remote_calls']} ({c['streams']:,} streams) "
            f"| {c['ready']:,} "
            f"| {c['latency_ms']['p50']:,.0f} / {c['latency_ms']['p99']:,.0f} "
            f"| {branch['latency_ms']['p50']:.1f} / {branch['latency_ms']['p99']:.1f} "
            f"({f'{lookups} ls-remote runs' if lookups else 'no ls-remote run'}) "
            f"| {sha['latency_ms']['p50']:.1f} / {sha['latency_ms']['p99']:.1f} |"
        )
    default, reused = crowd["default"]["crowd"], crowd["reuse_10s"]["crowd"]
    checks = [
        (
            "`git ls-remote` runs for the crowd, reuse window 10 s",
            reused["ls_remote_calls"],
            targets["crowd_ls_remote_calls"],
        ),
        (
            "`git ls-remote` runs for the crowd, default (only lookups in flight shared)",
            default["ls_remote_calls"],
            targets["crowd_ls_remote_calls"],
        ),
    ]
    verdicts = ["| measure | result | target | verdict |", "| --- | --- | --- | --- |"]
    verdicts += [
        f"| {label} | {got} | {want} | {_verdict(got <= want)} |" for label, got, want in checks
    ]
    for key, label in (("default", "default"), ("reuse_10s", "reuse window 10 s")):
        ready = crowd[key]["crowd"]["ready"]
        verdicts.append(
            f"| streams that end `ready`, {label} | {ready:,} | {targets['crowd_ready']:,} "
            f"| {_verdict(ready == targets['crowd_ready'])} |"
        )
    streams = f"{default['streams']:,}"
    requests = crowd["default"]["by_branch"]["latency_ms"]["n"]
    lookup_ms = crowd["default"]["by_branch"]["latency_ms"]["p50"]
    return f"""{HEADING}

Measured on {crowd["date"]} with `{crowd["command"].strip()}` (see
`benchmarks/README.md`): {streams} concurrent event streams for one `<repo>/HEAD` spec
whose image exists, against a service process with the fake executor and a real git daemon
whose `git ls-remote` runs are counted; then {requests} sequential requests by branch and by
commit sha. Raw numbers: the `crowd` entry of `benchmarks/results.json`.

{chr(10).join(rows)}

{chr(10).join(verdicts)}

With the default 0 only lookups in flight at the same moment are shared. The service accepts
the {streams} connections over about {default["wall_s"]:.0f} s while one lookup takes about
{lookup_ms:.0f} ms, so a stream that arrives after the first lookup has landed starts another:
the count with 0 varies from run to run (1 to 3 on this machine). A reuse window of a few
seconds makes one lookup serve the whole crowd, at the cost of answering with a branch head up
to that old.
"""


def write_section(crowd: dict[str, Any], path: Path) -> None:
    """Replace (or add) the section at the end of the benchmarks page."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    head = text.split(HEADING, 1)[0].rstrip("\n")
    path.write_text(f"{head}\n\n{section(crowd)}")
