"""End to end: the service as a subprocess, a real Docker engine, a real registry.

Repositories are served by a local git daemon and build FROM a local base image.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from binderhub_service.naming import split_image_name

from .repos import chatty_repo, failing_repo, hello_repo
from .sse import read_events

pytestmark = pytest.mark.docker


def quote(url: str) -> str:
    return urllib.parse.quote(url, safe="")


PHASE_ORDER = ["waiting", "fetching", "building", "pushing", "built", "ready"]


def assert_phases_in_order(phases: list[str | None]) -> None:
    ranks = [PHASE_ORDER.index(p) for p in phases if p in PHASE_ORDER]
    assert ranks == sorted(ranks), phases


def repo2docker_runs(service) -> int:
    return service.log().count("running repo2docker for")


async def test_fresh_build_streams_phases_pushes_and_runs(
    service_factory, registry, git_server, base_image
):
    url, sha = git_server.make_repo("hello", hello_repo(base_image, "hello from the image"))
    service = service_factory(registry=registry)

    stream = await read_events(service.git_build_url(url, "main"))

    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.phases[0] == "waiting"
    # The service pushes after the build container ended: "pushing" comes last.
    assert {"fetching", "building", "pushing"} <= set(stream.phases)
    assert_phases_in_order(stream.phases)
    assert stream.phases[-2:] == ["built", "ready"]
    final = stream.events[-1]
    assert final["message"] == "Done! Image built\n"
    image = final["imageName"]
    assert image.startswith(f"{registry.host}/binder-")
    assert image.endswith(":" + sha)
    assert all(m.endswith("\n") for m in stream.messages)
    assert stream.ids == list(range(1, len(stream.events) + 1))

    _, repository, tag = split_image_name(image)
    assert registry.tags(repository) == [tag]
    subprocess.run(["docker", "image", "rm", "-f", image], check=True, capture_output=True)
    run = subprocess.run(
        ["docker", "run", "--rm", "--network=none", image], capture_output=True, text=True
    )
    assert run.stdout == "hello from the image\n", run.stderr

    again = await read_events(service.git_build_url(url, sha))
    assert again.events == [
        {"phase": "ready", "message": "Done! Found built image\n", "imageName": image}
    ]
    assert repo2docker_runs(service) == 1

    with urllib.request.urlopen(service.url + "health") as response:
        health = json.load(response)
    assert health["ok"] is True
    assert {c["service"] for c in health["checks"]} == {"executor", "registry"}


async def test_failing_build_ends_with_failed(service_factory, registry, git_server, base_image):
    url, _ = git_server.make_repo("broken", failing_repo(base_image))
    service = service_factory(registry=registry)

    stream = await read_events(service.git_build_url(url, "main"), timeout=120)

    assert stream.phases[-1] == "failed"
    assert stream.messages[-1].startswith("Build failed: ")
    assert "about to fail" in "".join(stream.messages)
    assert "Traceback" not in "".join(stream.messages)
    assert "ready" not in stream.phases


async def test_concurrent_requests_share_one_build(
    service_factory, registry, git_server, base_image
):
    url, _ = git_server.make_repo("shared", chatty_repo(base_image, 200, batch=50, pause=0.2))
    service = service_factory(registry=registry)
    build_url = service.git_build_url(url, "main")

    streams = await asyncio.gather(*(read_events(build_url) for _ in range(10)))

    assert repo2docker_runs(service) == 1
    first = streams[0]
    assert first.phases[-1] == "ready"
    printed = [m for m in first.messages if "line-" in m]
    assert len(printed) >= 200
    for stream in streams[1:]:
        assert stream.events == first.events
        assert stream.ids == first.ids


async def test_late_joiner_and_reconnect_get_the_whole_log(
    service_factory, registry, git_server, base_image
):
    url, _ = git_server.make_repo("slow", chatty_repo(base_image, 100, batch=10, pause=0.2))
    service = service_factory(registry=registry)
    build_url = service.git_build_url(url, "main")

    first_task = asyncio.create_task(read_events(build_url))
    partial = await read_events(build_url, stop_after=8)
    late = await read_events(build_url, headers={"Last-Event-ID": str(partial.ids[-1])})
    first = await first_task
    joiner = await read_events(build_url, headers={"Last-Event-ID": "0"})

    assert first.phases[-1] == "ready"
    assert partial.events + late.events == first.events
    assert late.ids[0] == partial.ids[-1] + 1
    assert joiner.events == first.events
    assert repo2docker_runs(service) == 1


async def test_without_registry_images_stay_in_the_engine(service_factory, git_server, base_image):
    url, sha = git_server.make_repo("local-only", hello_repo(base_image, "local"))
    service = service_factory()

    stream = await read_events(service.git_build_url(url, "main"))
    image = stream.events[-1]["imageName"]
    assert stream.phases[-1] == "ready"
    assert "pushing" not in stream.phases
    assert image.startswith("binder-") and image.endswith(sha)

    again = await read_events(service.git_build_url(url, "main"))
    assert again.phases == ["ready"]
    assert again.messages == ["Done! Found built image\n"]
    subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)


@pytest.mark.parametrize(
    ("provider", "spec", "status", "words"),
    [
        ("nope", "org/repo/main", 404, "Unknown repository provider"),
        ("git", "no-ref-here", 400, "git spec looks like"),
        (
            "git",
            urllib.parse.quote("git://127.0.0.1:1/x.git", safe="") + "/--upload-pack=evil",
            400,
            "must not start with '-'",
        ),
        (
            "git",
            urllib.parse.quote("ext::sh -c touch% /tmp/pwned", safe="") + "/main",
            400,
            "ext::",
        ),
        ("git", urllib.parse.quote("file:///etc", safe="") + "/main", 400, "not allowed"),
    ],
)
async def test_bad_requests_fail_clearly_and_start_nothing(
    service_factory, provider, spec, status, words
):
    service = service_factory()

    stream = await read_events(service.build_url(provider, spec))

    assert stream.status == 200
    assert len(stream.events) == 1
    event = stream.events[0]
    assert event["phase"] == "failed"
    assert event["status_code"] == status
    assert words in event["message"]
    assert repo2docker_runs(service) == 0


@pytest.mark.node
def test_binderhub_client_builds_directly(service_factory, registry, git_server, base_image):
    """The JavaScript client of BinderHub's build API (npm, as fancy-profiles uses it)."""
    url, sha = git_server.make_repo("js-client", hello_repo(base_image, "from node"))
    service = service_factory(registry=registry)
    spec = "git/" + quote(url) + "/main"
    result = subprocess.run(
        ["node", "build.mjs", service.url + "build/", spec, ""],
        cwd=Path(__file__).parent / "js",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["phase"] == "waiting"
    assert events[-1]["phase"] == "ready"
    assert events[-1]["imageName"].endswith(":" + sha)
    assert any(e.get("phase") == "building" for e in events)
