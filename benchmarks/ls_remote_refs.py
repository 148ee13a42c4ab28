"""Memory of a ref lookup against a git server advertising a huge number of refs.

Run from the repository root, in the environment the service is installed in::

    python -m benchmarks.ls_remote_refs            # 1,500,000 refs (about 30 s)
    python -m benchmarks.ls_remote_refs 100000     # fewer

A fake git server (``tests/fake_git.py``, its own process, on loopback)
advertises N refs that all end in ``main``; ``GitRepoProvider.resolve_ref`` is
asked for ``main`` with the default limits. Printed: the outcome, the service
process's resident memory before and after and its peak (VmHWM), and the peak
resident memory of the git child. Targets: the service grows by less than
16 MiB, the git child stays under ``ls_remote_memory_limit`` plus its code
(about 300 MiB with the default 256 MiB).
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
import urllib.parse

from binderhub_service.errors import ServiceError
from binderhub_service.providers import GitRepoProvider


def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure(count: int) -> dict[str, object]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_git", str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        provider = GitRepoProvider(denied_networks=[], resolve_timeout=300)
        repo = provider.parse(urllib.parse.quote(url, safe="") + "/main")
        before = status_mib("VmRSS")
        started = time.monotonic()
        try:
            outcome = await provider.resolve_ref(repo)
        except ServiceError as error:
            outcome = f"{type(error).__name__}: {error.message}"
        return {
            "refs": count,
            "outcome": outcome,
            "seconds": round(time.monotonic() - started, 1),
            "service_rss_before_mib": round(before, 1),
            "service_rss_after_mib": round(status_mib("VmRSS"), 1),
            "service_peak_rss_mib": round(status_mib("VmHWM"), 1),
            "git_peak_rss_mib": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
        }
    finally:
        server.kill()
        server.wait()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000
    for key, value in asyncio.run(measure(count)).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
