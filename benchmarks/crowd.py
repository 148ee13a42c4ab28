"""A crowd on one link: 1,000 concurrent event streams for one ``HEAD`` spec whose image exists.

Run from the repository root, in the environment the service is installed in::

    python -m benchmarks.crowd              # 1,000 streams, 200 sequential requests each way
    python -m benchmarks.crowd --streams 100 --requests 50 --no-write

The service runs as its own ``binderhub-service`` process (fake executor, from
``tests/fakes.py``: no engine is needed, the image is "built" by one request by
commit sha first) on a free loopback port, with a real git daemon
(``tests/conftest.py``). Its ``git`` is a wrapper that counts every
``git ls-remote`` it runs. Measured, with request-to-``ready`` latency as
p50/p99 (the client, in this process, shares the machine's cores):

- ``crowd``: N concurrent streams for ``<repo>/HEAD``: ls-remote calls (target:
  one), streams that ended ``ready`` (target: all), wall time;
- ``by_branch``: sequential requests for ``HEAD``;
- ``by_sha``: sequential requests by the 40-hex commit (no ls-remote);

each with ``resolved_ref_seconds`` 0 (the default: only lookups in flight at
once are shared, so requests that arrive after the first lookup landed pay
another) and 10 (a resolved branch is reused for 10 s).

Results go to the ``crowd`` entry of ``benchmarks/results.json`` and to the "A crowd on
one link" section of ``docs/source/benchmarks.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.crowd_report import write_section  # noqa: E402
from benchmarks.run import RESULTS_MD, summary_ms  # noqa: E402
from tests.conftest import (  # noqa: E402
    LOOPBACK_NETWORKS,
    ServiceProcess,
    free_port,
    launch_service,
    start_git_daemon,
    stop_process,
)
from tests.sse import read_events  # noqa: E402

RESULTS_JSON = ROOT / "benchmarks" / "results.json"


def counting_git(workdir: Path) -> tuple[Path, Path]:
    """A ``git`` that appends a line to a file for every ``ls-remote``, then runs git."""
    calls = workdir / "ls-remote-calls"
    calls.touch()
    script = workdir / "counting-git"
    real = shutil.which("git")
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" ls-remote "*) echo x >> "{calls}";; esac\n'
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    return script, calls


def start_service(workdir: Path, git: Path, reuse_seconds: float) -> ServiceProcess:
    port = free_port()
    config = workdir / f"config-{reuse_seconds:g}.py"
    config.write_text(
        "\n".join(
            [
                "from tests.fakes import FakeExecutor",
                "from binderhub_service.providers.git import GitRepoProvider",
                "c.BinderHubService.ip = '127.0.0.1'",
                f"c.BinderHubService.port = {port}",
                "c.BinderHubService.executor_class = FakeExecutor",
                "c.BinderHubService.auth_enabled = False",
                f"c.BinderHubService.db_url = 'sqlite+aiosqlite:///{workdir}/db-{reuse_seconds:g}'",
                f"c.BinderHubService.data_dir = {str(workdir / 'data')!r}",
                f"c.BinderHubService.resolved_ref_seconds = {reuse_seconds}",
                "c.RepoProviderCatalog.provider_classes = {'git': GitRepoProvider}",
                f"c.GitRepoProvider.git_executable = {str(git)!r}",
                "c.UserLimits.rate_limit_per_minute = 0",
                "c.BinderHubService.log_level = 'WARN'",
                LOOPBACK_NETWORKS,
            ]
        )
    )
    return launch_service(config, workdir, f"http://127.0.0.1:{port}/")


async def timed(url: str) -> tuple[float, list[str | None]]:
    started = time.perf_counter()
    stream = await read_events(url, timeout=600)
    return time.perf_counter() - started, stream.phases


async def measure(
    workdir: Path, repo_url: str, sha: str, streams: int, requests: int, reuse: float
) -> dict[str, Any]:
    git, calls_file = counting_git(workdir)
    service = start_service(workdir, git, reuse)
    base = f"{service.url}build/git/{urllib.parse.quote(repo_url, safe='')}"

    def calls() -> int:
        return len(calls_file.read_text().splitlines())

    try:
        _, phases = await timed(f"{base}/{sha}?build_only=true")
        assert phases[-1] == "ready", phases
        result: dict[str, Any] = {"resolved_ref_seconds": reuse}
        if streams:
            before = calls()
            started = time.perf_counter()
            outcomes = await asyncio.gather(
                *(timed(f"{base}/HEAD?build_only=true") for _ in range(streams))
            )
            result["crowd"] = {
                "streams": streams,
                "wall_s": round(time.perf_counter() - started, 3),
                "ls_remote_calls": calls() - before,
                "ready": sum(1 for _, p in outcomes if p == ["ready"]),
                "latency_ms": summary_ms([t for t, _ in outcomes]),
            }
        for name, ref in (("by_branch", "HEAD"), ("by_sha", sha)):
            before = calls()
            times = []
            for _ in range(requests):
                elapsed, phases = await timed(f"{base}/{ref}?build_only=true")
                assert phases == ["ready"], phases
                times.append(elapsed)
            result[name] = {"ls_remote_calls": calls() - before, "latency_ms": summary_ms(times)}
        return result
    finally:
        service.stop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.streams + 256)), hard))
    # The service process imports its fake executor from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    with tempfile.TemporaryDirectory(prefix="bhs-crowd-") as tmp:
        workdir = Path(tmp)
        daemon, git_server = start_git_daemon(workdir / "git")
        try:
            repo_url, sha = git_server.make_repo("crowd", {"README.md": "a crowd on one link\n"})
            default = await measure(workdir, repo_url, sha, args.streams, args.requests, 0.0)
            reused = await measure(workdir, repo_url, sha, args.streams, args.requests, 10.0)
        finally:
            stop_process(daemon)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks.crowd " + " ".join(sys.argv[1:]),
        "targets": {"crowd_ls_remote_calls": 1, "crowd_ready": args.streams},
        "default": default,
        "reuse_10s": reused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (1000)")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests (200)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    if not args.no_write:
        results = json.loads(RESULTS_JSON.read_text())
        results["crowd"] = result
        RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
        write_section(result, RESULTS_MD)


if __name__ == "__main__":
    main()
