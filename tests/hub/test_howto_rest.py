"""The REST API walk-through (docs/source/howto/rest-api.md), run as written against a real hub.

Its first block (where the API is, whose token, which repository) is replaced
with this hub's service URL, a builder's token and a repository on the test's git
daemon (builds here are offline); every other block runs verbatim, in order, in
one shell, with a real build on the local engine pushed to a loopback registry.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from tests.conftest import GitServer, Registry
from tests.docs_snippets import code_blocks
from tests.repos import hello_repo

from .conftest import Hub

PAGE = "howto/rest-api.md"


@pytest.mark.hub
@pytest.mark.docker
def test_the_rest_walk_through_as_written(
    hub: Hub, git_server: GitServer, registry: Registry, base_image: str
) -> None:
    where, *steps = [block.body for block in code_blocks(PAGE, "bash")]
    assert where.splitlines()[0].startswith("API=http://127.0.0.1:8000/services/binder/api/v1")
    repo_url, _ = git_server.make_repo("rest-walk-through", hello_repo(base_image, "rest"))
    ours = (
        f"API={shlex.quote(hub.service_url + 'api/v1')}\n"
        f"AUTH={shlex.quote('Authorization: token ' + hub.tokens['alice'])}\n"
        f"REPO={shlex.quote(repo_url)}\n"
    )
    marker = "#----step----"
    script = "set -euo pipefail\n" + ours + "".join(f"echo '{marker}'\n{s}" for s in steps)
    result = subprocess.run(
        ["bash", "-c", script], env=dict(os.environ), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    started, events, listing, saved, cancel = [
        part.strip() for part in result.stdout.split(marker)[1:]
    ]
    build = json.loads(started)
    assert build["state"] in ("queued", "running") and build["repo_url"] == repo_url
    last = events.strip().splitlines()[-1]
    assert last.startswith("data: ") and json.loads(last[6:])["phase"] == "ready"
    page = json.loads(listing)
    assert build["id"] in [b["id"] for b in page["builds"]]
    # The two answers follow each other on one line (curl adds no newline).
    image, end = json.JSONDecoder().raw_decode(saved)
    images = json.loads(saved[end:])
    assert image["name"] == "my-analysis" and image["build_id"] == build["id"]
    assert "my-analysis" in [i["name"] for i in images["images"]]
    assert json.loads(cancel)["status"] == 409
