"""The spawner hook through a real hub: user options cannot make it act for another user."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import GitServer
from tests.repos import hello_repo

from .conftest import Hub
from .test_hub import spawn

pytestmark = [pytest.mark.hub, pytest.mark.docker]


def hook_call(hub: Hub, method: str, path: str, body: object = None) -> tuple[int, dict]:
    """Call the service's API with the spawner hook's (admin) token."""
    request = urllib.request.Request(
        hub.service_url + "api/v1/" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {hub.hook_token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def builds_of(hub: Hub, user: str) -> list[dict]:
    status, page = hook_call(hub, "GET", f"builds?user={user}&limit=200")
    assert status == 200, page
    return page["builds"]


async def test_user_options_cannot_build_on_behalf_of_another_user(
    hub: Hub, git_server: GitServer, base_image: str
) -> None:
    url, sha = git_server.make_repo("hub-injection", hello_repo(base_image, "injected"))
    victims_before = {b["id"] for b in await asyncio.to_thread(builds_of, hub, "bob")}
    acting_for_bob = hub.log().count("acts on behalf of user bob")
    # Pasted into a URL, this provider would be a complete build request for bob.
    spec = f"git/{urllib.parse.quote(url, safe='')}/{sha}"
    attempts = [
        {"repo": url, "ref": f"{sha}?build_only=true&on_behalf_of=bob#"},
        {"repo": f"{url}?build_only=true&on_behalf_of=bob#", "ref": sha},
        {"repo": f"{url}#", "ref": "&on_behalf_of=bob"},
        {"repo": "org/repo/main?build_only=true&on_behalf_of=bob#", "provider": "gh"},
        {"repo": url, "provider": f"{spec}?build_only=true&on_behalf_of=bob#", "ref": sha},
        {"repo": f"{url}#", "provider": "git", "ref": f"{sha}#&on_behalf_of=bob"},
    ]
    for options in attempts:
        result = await asyncio.to_thread(spawn, hub, "alice", options)
        if "error" not in result:
            await asyncio.to_thread(hub.api, "DELETE", "users/alice/server")
    victims_after = await asyncio.to_thread(builds_of, hub, "bob")
    assert {b["id"] for b in victims_after} == victims_before
    assert hub.log().count("acts on behalf of user bob") == acting_for_bob
    assert hub.log().count("acts on behalf of user alice") >= len(attempts)


async def test_empty_or_repeated_on_behalf_of_is_refused(hub: Hub) -> None:
    body = {"repo_url": "git://127.0.0.1:9/none.git", "ref": "a" * 40}
    for query in ("on_behalf_of=", "on_behalf_of=alice&on_behalf_of=bob", "on_behalf_of=%20"):
        status, answer = await asyncio.to_thread(hook_call, hub, "POST", f"builds?{query}", body)
        assert status == 400, (query, answer)
        assert "on_behalf_of" in answer["message"]
