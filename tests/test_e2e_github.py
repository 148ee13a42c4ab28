"""``gh`` specs end to end, offline: GitHub's API and git over HTTP emulated on loopback.

The emulator (tests/github_emulator.py) resolves refs from the same bare
repositories the test pushes to and serves them with ``git http-backend``.
Builds are real (local executor, Docker engine, registry).
"""

from __future__ import annotations

import asyncio
import glob
import subprocess
import urllib.request

import pytest

from .github_emulator import start_github
from .repos import hello_repo
from .sse import read_events

pytestmark = pytest.mark.docker

TOKEN = "ghp_planted_SECRET_4f1c2e9a"


def github_config(url: str, token: str | None = None) -> list[str]:
    lines = [
        f"c.GitHubRepoProvider.api_url = {url + '/api/'!r}",
        f"c.GitHubRepoProvider.clone_url_base = {url!r}",
    ]
    if token:
        lines.append(f"c.GitHubRepoProvider.access_token = {token!r}")
        lines.append("c.GitHubRepoProvider.clone_with_token = ['octo/.*']")
    return lines


async def test_gh_spec_builds_with_the_resolved_sha_as_tag(
    service_factory, registry, git_server, base_image
):
    _, sha = git_server.make_repo("octo/hello", hello_repo(base_image, "from gh"))
    server, github = start_github(git_server.root / "repos")
    try:
        service = service_factory(*github_config(github.url), registry=registry)
        stream = await read_events(service.build_url("gh", "octo/hello/main"))
        again = await read_events(service.build_url("gh", "octo/hello/main"))
    finally:
        server.stop()

    assert stream.phases[-1] == "ready", stream.messages[-3:]
    image = stream.events[-1]["imageName"]
    assert image.endswith(":" + sha)
    assert "/binder-127-2e0-2e0-2e1-2focto-2fhello-" in image
    assert again.phases == ["ready"]
    assert github.api_requests == ["/api/repos/octo/hello/commits/main"] * 2


def processes_with(text: str) -> list[str]:
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(cmdline.decode(errors="replace"))
    return found


async def test_private_repository_credentials_never_show(
    service_factory, registry, git_server, base_image
):
    _, sha = git_server.make_repo("octo/private", hello_repo(base_image, "secret sauce"))
    server, github = start_github(git_server.root / "repos", token=TOKEN)
    try:
        anonymous = service_factory(*github_config(github.url), registry=registry)
        refused = await read_events(anonymous.build_url("gh", "octo/private/main"))
        assert refused.phases == ["failed"]
        assert refused.events[0]["status_code"] == 404

        service = service_factory(*github_config(github.url, TOKEN), registry=registry)
        build = asyncio.create_task(read_events(service.build_url("gh", "octo/private/main")))
        seen_in_ps: list[str] = []
        while not build.done():
            seen_in_ps += processes_with(TOKEN)
            await asyncio.sleep(0.05)
        stream = await build
        with urllib.request.urlopen(service.url + "metrics") as response:
            metrics = response.read().decode()
    finally:
        server.stop()

    assert stream.phases[-1] == "ready", stream.messages[-3:]
    image = stream.events[-1]["imageName"]
    assert image.endswith(":" + sha)
    # The clone really used the credentials, over HTTP basic auth.
    assert any(a.startswith("Basic ") for a in github.authorizations)
    raw_events = "".join(str(e) for e in stream.events)
    labels = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for place, text in [
        ("events", raw_events),
        ("service log", service.log()),
        ("metrics", metrics),
        ("image name", image),
        ("image labels", labels),
        ("process list", "\n".join(seen_in_ps)),
    ]:
        assert TOKEN not in text, place
