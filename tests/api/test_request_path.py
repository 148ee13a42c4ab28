"""The event stream and the REST API answer and record requests the same way.

In process (fake executor), on SQLite and PostgreSQL; identity from
``X-Test-User`` as in test_api.py. The resolution test asks a real git daemon.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from binderhub_service.build_requests import BuildRequests
from binderhub_service.providers.git import GitRepoProvider
from tests.conftest import GitServer
from tests.sse import EventStream, read_events

Api = Any  # the conftest fixture's Api

SHA = "d" * 40
COMPARED = ("provider", "spec", "ref", "repo_url", "image_name", "state")


def stream_url(api: Api, repo_url: str, ref: str = SHA) -> str:
    base = api.url.removesuffix("api/v1/")
    return f"{base}build/git/{urllib.parse.quote(repo_url, safe='')}/{ref}?build_only=true"


async def stream(api: Api, user: str, repo_url: str, ref: str = SHA) -> EventStream:
    return await read_events(stream_url(api, repo_url, ref), headers={"X-Test-User": user})


async def post(api: Api, user: str, repo_url: str, ref: str = SHA) -> tuple[int, Any]:
    return await api.call("POST", "builds", {"repo_url": repo_url, "ref": ref}, user=user)


async def builds_of(api: Api, user: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", "builds", user=user)
    assert status == 200
    return list(body["builds"])


async def test_joining_and_finding_leave_the_same_records_both_ways(api: Api) -> None:
    repo_url = "git://127.0.0.1:9/both-ways.git"
    api.executor.pause = 0.2
    status, started = await post(api, "alice", repo_url)
    assert status == 202
    # Bob joins through the stream, carol through the API: both become requesters.
    bob_stream, (status, carol_joined) = await asyncio.gather(
        stream(api, "bob", repo_url), post(api, "carol", repo_url)
    )
    assert status == 202 and carol_joined["id"] == started["id"]
    assert bob_stream.phases[-1] == "ready" and len(api.executor.runs) == 1
    bob_sees, carol_sees = await builds_of(api, "bob"), await builds_of(api, "carol")
    assert [b["id"] for b in bob_sees] == [b["id"] for b in carol_sees] == [started["id"]]
    assert {k: bob_sees[0][k] for k in COMPARED} == {k: carol_sees[0][k] for k in COMPARED}

    # The image exists now. Dave asks through the stream, erin through the API:
    # each gets a succeeded record of their own saying the image was found.
    dave_stream = await stream(api, "dave", repo_url)
    assert dave_stream.phases == ["ready"]
    status, erin_found = await post(api, "erin", repo_url)
    assert status == 200
    dave_sees, erin_sees = await builds_of(api, "dave"), await builds_of(api, "erin")
    assert [b["id"] for b in erin_sees] == [erin_found["id"]]
    assert len(dave_sees) == 1 and dave_sees[0]["id"] not in (erin_found["id"], started["id"])
    assert dave_sees[0]["requester"] == "dave" and erin_sees[0]["requester"] == "erin"
    assert {k: dave_sees[0][k] for k in COMPARED} == {k: erin_sees[0][k] for k in COMPARED}
    assert dave_sees[0]["state"] == "succeeded" and len(api.executor.runs) == 1
    # Asking again either way reuses the user's record instead of adding one.
    await stream(api, "erin", repo_url)
    assert (await post(api, "dave", repo_url))[1]["id"] == dave_sees[0]["id"]
    assert [b["id"] for b in await builds_of(api, "erin")] == [erin_found["id"]]


async def test_cancel_is_for_the_user_who_started(api: Api) -> None:
    repo_url = "git://127.0.0.1:9/hang-cancel.git"
    _, started = await post(api, "alice", repo_url)
    status, joined = await post(api, "bob", repo_url)
    assert status == 202 and joined["id"] == started["id"]
    status, _ = await api.call("POST", f"builds/{started['id']}/cancel", user="bob")
    assert status == 403
    status, cancelled = await api.call("POST", f"builds/{started['id']}/cancel", user="alice")
    assert status == 200 and cancelled["state"] == "cancelled"
    events = f"{api.url}builds/{started['id']}/events"
    bob_stream = await read_events(events, headers={"X-Test-User": "bob"})
    assert bob_stream.phases[-1] == "failed" and "cancelled" in bob_stream.messages[-1]


async def test_concurrent_requests_for_a_branch_make_one_resolution(
    api: Api, git_server: GitServer, monkeypatch: Any
) -> None:
    """Concurrent requests for one branch share one ``git ls-remote`` of the real daemon.

    The lookup is held until every request has asked for the spec (ordering by
    events): all of them are in flight at once.
    """
    crowd = 25
    repo_url, sha = git_server.make_repo("crowd", {"README": "crowd"})
    status, built = await post(api, "alice", repo_url, sha)
    assert status == 202
    events = f"{api.url}builds/{built['id']}/events"
    assert (await read_events(events, headers={"X-Test-User": "alice"})).phases[-1] == "ready"
    asking, everyone_asked = 0, asyncio.Event()
    calls: list[str] = []
    resolve, ls_remote = BuildRequests.resolve, GitRepoProvider._ls_remote

    async def counted_resolve(self: BuildRequests, prefix: str, spec: str) -> Any:
        nonlocal asking
        asking += 1
        if asking == crowd:
            everyone_asked.set()
        return await resolve(self, prefix, spec)

    async def counted_ls_remote(self: GitRepoProvider, repo: Any) -> str:
        calls.append(repo.ref)
        await everyone_asked.wait()
        return await ls_remote(self, repo)

    monkeypatch.setattr(BuildRequests, "resolve", counted_resolve)
    monkeypatch.setattr(GitRepoProvider, "_ls_remote", counted_ls_remote)
    streams = await asyncio.gather(
        *(stream(api, f"user{i}", repo_url, "main") for i in range(crowd))
    )
    assert calls == ["main"]
    assert all(s.phases == ["ready"] for s in streams)
    assert len(api.executor.runs) == 1 and built["ref"] == sha
