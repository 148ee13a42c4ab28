"""Records of real builds: repo2docker on the Docker engine, the service as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.repos import chatty_repo
from tests.sse import read_events

pytestmark = [pytest.mark.docker]


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    response = await AsyncHTTPClient().fetch(
        url,
        method=method,
        body=None if body is None else json.dumps(body),
        allow_nonstandard_methods=True,
        raise_error=False,
        request_timeout=120,
    )
    return response.code, json.loads(response.body or b"null")


def repo2docker_pids(image_name: str) -> list[int]:
    result = subprocess.run(["pgrep", "-f", image_name], capture_output=True, text=True)
    return [int(pid) for pid in result.stdout.split()]


async def start_build(service: Any, url: str, sha: str) -> dict[str, Any]:
    status, record = await call(
        "POST", service.url + "api/v1/builds", {"repo_url": url, "ref": sha}
    )
    assert status == 202, record
    return record


async def wait_for_lines(events_url: str, count: int) -> None:
    stream = await read_events(events_url, stop_after=count, timeout=120)
    assert len(stream.events) >= count


async def test_stored_log_of_10k_line_build_equals_live_stream(
    service_factory, git_server, base_image
) -> None:
    url, sha = git_server.make_repo("chatty10k", chatty_repo(base_image, 10_000))
    service = service_factory()
    record = await start_build(service, url, sha)
    events_url = f"{service.url}api/v1/builds/{record['id']}/events"
    live = await read_events(events_url, timeout=240)
    assert live.phases[-1] == "ready", live.messages[-5:]
    printed = {n for m in live.messages for n in re.findall(r"\bline-(\d+)\b", m)}
    assert printed == {str(n) for n in range(1, 10_001)}
    service.stop()
    # The same data directory: the log now comes from the database.
    again = service_factory()
    replayed = await read_events(f"{again.url}api/v1/builds/{record['id']}/events")
    assert replayed.events == live.events and replayed.ids == live.ids


async def test_cancel_a_running_build(service_factory, git_server, base_image) -> None:
    url, sha = git_server.make_repo("slow-cancel", chatty_repo(base_image, 100_000, 50, 0.2))
    service = service_factory()
    record = await start_build(service, url, sha)
    events_url = f"{service.url}api/v1/builds/{record['id']}/events"
    await wait_for_lines(events_url, 20)
    assert repo2docker_pids(record["image_name"])
    status, cancelled = await call("POST", f"{service.url}api/v1/builds/{record['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"
    stream = await read_events(events_url, timeout=30)
    assert stream.phases[-1] == "failed" and "cancelled" in stream.messages[-1]
    assert repo2docker_pids(record["image_name"]) == []


async def test_restart_after_sigkill_reconciles_the_build(
    service_factory, git_server, base_image
) -> None:
    url, sha = git_server.make_repo("slow-restart", chatty_repo(base_image, 100_000, 50, 0.2))
    service = service_factory()
    record = await start_build(service, url, sha)
    events_url = f"{service.url}api/v1/builds/{record['id']}/events"
    await wait_for_lines(events_url, 30)
    await asyncio.sleep(0.5)  # let the recorder write what was streamed
    os.kill(service.proc.pid, signal.SIGKILL)
    service.proc.wait()
    try:
        again = service_factory()
        status, reconciled = await call("GET", f"{again.url}api/v1/builds/{record['id']}")
        assert status == 200
        assert reconciled["state"] == "failed"
        assert reconciled["failure_reason"] == "interrupted by service restart"
        stream = await read_events(f"{again.url}api/v1/builds/{record['id']}/events")
        assert len(stream.events) >= 30
        assert stream.ids == list(range(1, len(stream.events) + 1))
        assert stream.phases[-1] == "failed"
        assert "interrupted by service restart" in stream.messages[-1]
        # repo2docker ran in its own session and outlived the killed service: the
        # new start stopped it and removed its working directory.
        assert repo2docker_pids(record["image_name"]) == []
        builds_dir = again.config_file.parent / "binderhub-service-data" / "builds"
        assert list(builds_dir.iterdir()) == []
    finally:
        for pid in repo2docker_pids(record["image_name"]):
            os.kill(pid, signal.SIGKILL)
