"""REST API v1 in process (fake executor), on SQLite and PostgreSQL.

Identity: a test-only authenticator, chosen by config, reads the user from
``X-Test-User`` (and admin from ``X-Test-Admin``); see conftest.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.sse import read_events

Api = Any  # the conftest fixture's Api

SHA = "c" * 40


def git(name: str, sha: str = SHA) -> dict[str, str]:
    return {"repo_url": f"git://127.0.0.1:9/{name}.git", "ref": sha}


async def wait_state(api: Api, build_id: str, state: str, user: str | None = None) -> Any:
    for _ in range(200):
        _, record = await api.call("GET", f"builds/{build_id}", user=user)
        if record["state"] == state:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"build {build_id} never reached {state}: {record}")


async def test_build_lifecycle_and_stored_log(api: Api) -> None:
    status, record = await api.call("POST", "builds", git("repo"), user="alice")
    assert status == 202
    assert record["requester"] == "alice"
    assert record["provider"] == "git" and record["ref"] == SHA
    assert record["state"] in ("running", "queued")
    done = await wait_state(api, record["id"], "succeeded", user="alice")
    assert done["duration_seconds"] is not None and done["finished"] is not None
    assert {"waiting", "fetching", "building", "ready"} <= set(done["phase_times"])
    assert done["executor"] == "fake" and done["repo2docker_version"] == "0.0-fake"

    events_url = f"{api.url}builds/{record['id']}/events"
    stream = await read_events(events_url, headers={"X-Test-User": "alice"})
    assert stream.status == 200
    assert stream.phases[-1] == "ready"
    assert stream.ids == list(range(1, len(stream.events) + 1))
    # Resume after event 3, from memory and (once forgotten) from the store.
    resumed = await read_events(events_url, headers={"X-Test-User": "alice", "Last-Event-ID": "3"})
    assert resumed.ids == stream.ids[3:] and resumed.events == stream.events[3:]
    api.service.build_manager._builds.clear()
    replayed = await read_events(events_url, headers={"X-Test-User": "alice"})
    assert replayed.events == stream.events and replayed.ids == stream.ids
    tail = await read_events(events_url, headers={"X-Test-User": "alice", "Last-Event-ID": "3"})
    assert tail.events == stream.events[3:]


async def test_identical_requests_share_one_build(api: Api) -> None:
    status1, first = await api.call("POST", "builds", git("gated-shared"), user="alice")
    status2, second = await api.call("POST", "builds", git("gated-shared"), user="bob")
    assert (status1, status2) == (202, 202)
    assert first["id"] == second["id"] and len(api.executor.runs) == 1
    # Bob joined the build: he may see it, but not cancel it.
    assert (await api.call("GET", f"builds/{first['id']}", user="bob"))[0] == 200
    assert (await api.call("POST", f"builds/{first['id']}/cancel", user="bob"))[0] == 403
    api.executor.gate.set()
    await wait_state(api, first["id"], "succeeded", user="alice")
    # The image exists now: the succeeded record comes back, no new build runs.
    status, again = await api.call("POST", "builds", git("gated-shared"), user="alice")
    assert status == 200 and again["id"] == first["id"] and len(api.executor.runs) == 1
    # Carol never asked before: she gets a record of her own that says the image was found.
    status, found = await api.call("POST", "builds", git("gated-shared"), user="carol")
    assert status == 200 and found["state"] == "succeeded" and found["id"] != first["id"]
    stream = await read_events(
        f"{api.url}builds/{found['id']}/events", headers={"X-Test-User": "carol"}
    )
    assert stream.phases == ["ready"]


async def test_cancel_and_delete(api: Api) -> None:
    _, record = await api.call("POST", "builds", git("hang-forever"), user="alice")
    status, cancelled = await api.call("POST", f"builds/{record['id']}/cancel", user="alice")
    assert status == 200 and cancelled["state"] == "cancelled"
    assert api.executor.cancelled == [record["id"]]
    stream = await read_events(
        f"{api.url}builds/{record['id']}/events", headers={"X-Test-User": "alice"}
    )
    assert stream.phases[-1] == "failed" and "cancelled" in stream.messages[-1]
    status, error = await api.call("POST", f"builds/{record['id']}/cancel", user="alice")
    assert status == 409 and error["status"] == 409

    _, other = await api.call("POST", "builds", git("hang-again"), user="alice")
    status, deleted = await api.call("DELETE", f"builds/{other['id']}", user="alice")
    assert status == 200 and deleted["state"] == "cancelled"
    assert (await api.call("DELETE", f"builds/{other['id']}", user="alice"))[0] == 409


async def test_failed_build_record(api: Api) -> None:
    _, record = await api.call("POST", "builds", git("will-fail"), user="alice")
    failed = await wait_state(api, record["id"], "failed", user="alice")
    assert failed["failure_reason"] == "the Dockerfile failed"
    assert failed["failure_class"] == "build_error"


async def test_listing_filters_by_failure_class(api: Api) -> None:
    _, failing = await api.call("POST", "builds", git("will-fail-class"), user="alice")
    _, hanging = await api.call("POST", "builds", git("hang-class"), user="alice")
    _, working = await api.call("POST", "builds", git("works-class"), user="alice")
    await wait_state(api, failing["id"], "failed", user="alice")
    await wait_state(api, working["id"], "succeeded", user="alice")
    await api.call("POST", f"builds/{hanging['id']}/cancel", user="alice")

    async def listed(query: str) -> list[str]:
        status, page = await api.call("GET", f"builds?{query}", user="alice")
        assert status == 200, page
        return [b["id"] for b in page["builds"]]

    assert await listed("failure_class=build_error") == [failing["id"]]
    assert await listed("failure_class=cancelled") == [hanging["id"]]
    both = await listed("failure_class=cancelled&failure_class=build_error")
    assert sorted(both) == sorted([failing["id"], hanging["id"]])
    assert await listed("failure_class=disk_full") == []
    _, record = await api.call("GET", f"builds/{working['id']}", user="alice")
    assert record["failure_class"] is None
    status, error = await api.call("GET", "builds?failure_class=nonsense", user="alice")
    assert status == 400 and "'failure_class' must be one of" in error["message"]


async def test_listing_filters_and_cursor(api: Api) -> None:
    ids = []
    for i in range(5):
        _, record = await api.call("POST", "builds", git(f"list{i}"), user="alice")
        ids.append(record["id"])
    _, bobs = await api.call("POST", "builds", git("will-fail-bob"), user="bob")
    await wait_state(api, bobs["id"], "failed", user="bob")
    for build_id in ids:
        await wait_state(api, build_id, "succeeded", user="alice")

    seen: list[str] = []
    cursor = ""
    while True:
        status, page = await api.call("GET", f"builds?limit=2{cursor}", user="alice")
        assert status == 200 and len(page["builds"]) <= 2
        seen += [b["id"] for b in page["builds"]]
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert seen == list(reversed(ids))

    _, admin_all = await api.call("GET", "builds", user="root", admin=True)
    assert {b["id"] for b in admin_all["builds"]} == {*ids, bobs["id"]}
    _, failed = await api.call("GET", "builds?state=failed", user="root", admin=True)
    assert [b["id"] for b in failed["builds"]] == [bobs["id"]]
    _, by_user = await api.call("GET", "builds?user=bob", user="root", admin=True)
    assert [b["id"] for b in by_user["builds"]] == [bobs["id"]]
    repo = "git://127.0.0.1:9/list3.git"
    _, by_repo = await api.call("GET", f"builds?repository={repo}", user="alice")
    assert [b["id"] for b in by_repo["builds"]] == [ids[3]]
    _, future = await api.call("GET", "builds?since=2999-01-01T00:00:00Z", user="alice")
    assert future["builds"] == []
    _, past = await api.call("GET", "builds?since=2000-01-01", user="alice")
    assert len(past["builds"]) == 5


async def test_ownership(api: Api) -> None:
    _, record = await api.call("POST", "builds", git("private"), user="alice")
    build_id = record["id"]
    await wait_state(api, build_id, "succeeded", user="alice")
    for path in (f"builds/{build_id}", f"builds/{build_id}/events"):
        assert (await api.call("GET", path, user="bob"))[0] == 404
        assert (await api.call("GET", path, user="root", admin=True))[0] == 200
    assert (await api.call("POST", f"builds/{build_id}/cancel", user="bob"))[0] == 404
    _, bob_list = await api.call("GET", "builds", user="bob")
    assert bob_list["builds"] == []

    image = {"name": "mine", "build_id": build_id, "description": "my env"}
    status, saved = await api.call("POST", "images", image, user="alice")
    assert status == 201 and saved["image"] == record["image_name"], saved
    status, _ = await api.call("POST", "images", image, user="bob")
    assert status == 400  # Bob may not see Alice's build.
    assert (await api.call("GET", "images/mine", user="bob"))[0] == 404
    assert (await api.call("DELETE", "images/mine", user="bob"))[0] == 404
    assert (await api.call("GET", "images", user="bob"))[1] == {"images": []}
    _, everyone = await api.call("GET", "images", user="root", admin=True)
    assert [i["owner"] for i in everyone["images"]] == ["alice"]
    status, _ = await api.call("GET", "images/mine?owner=alice", user="root", admin=True)
    assert status == 200
    status, _ = await api.call("DELETE", "images/mine?owner=alice", user="root", admin=True)
    assert status == 204


async def test_images(api: Api) -> None:
    api.executor.images.add("registry.example.org/py:1")  # in the (fake) engine
    body = {"name": "py3.12", "image": "registry.example.org/py:1", "description": "Python"}
    status, saved = await api.call("POST", "images", body)
    assert status == 201 and saved["owner"] == "anonymous" and saved["build_id"] is None
    assert (await api.call("POST", "images", body))[0] == 409
    status, listing = await api.call("GET", "images")
    assert status == 200 and [i["name"] for i in listing["images"]] == ["py3.12"]
    assert (await api.call("GET", "images/py3.12"))[1]["description"] == "Python"
    assert (await api.call("DELETE", "images/py3.12"))[0] == 204
    assert (await api.call("DELETE", "images/py3.12"))[0] == 404
    _, running = await api.call("POST", "builds", git("hang-image"))
    status, error = await api.call("POST", "images", {"name": "x", "build_id": running["id"]})
    assert status == 400 and "succeeded" in error["message"]


async def test_errors(api: Api) -> None:
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", "builds", None, 400),
        ("POST", "builds", [1], 400),
        ("POST", "builds", {"provider": "nope", "spec": "x"}, 400),
        ("POST", "builds", {"provider": "git"}, 400),
        ("POST", "builds", {"repo_url": "git://127.0.0.1:9/x.git", "extra": 1}, 400),
        ("POST", "builds", {"repo_url": 5}, 400),
        ("POST", "builds", {"repo_url": "ext::sh -c touch% /tmp/pwned"}, 400),
        ("GET", "builds?state=bogus", None, 400),
        ("GET", "builds?limit=0", None, 400),
        ("GET", "builds?cursor=abc", None, 400),
        ("GET", "builds?since=yesterday", None, 400),
        ("GET", "builds/unknown", None, 404),
        ("GET", "builds/unknown/events", None, 404),
        ("POST", "builds/unknown/cancel", None, 404),
        ("DELETE", "builds/unknown", None, 404),
        ("POST", "images", {"name": "-bad", "image": "x"}, 400),
        ("POST", "images", {"name": "ok"}, 400),
        ("GET", "images/none", None, 404),
        ("GET", "no/such/route", None, 404),
        ("PUT", "builds", {}, 405),
    ]
    for method, path, body, expected in cases:
        status, error = await api.call(method, path, body)
        assert status == expected, (method, path, body, error)
        assert error["status"] == expected and error["message"], error
    status, body = await api.call("POST", "builds", {"repo_url": "git://127.0.0.1:1/x.git"})
    assert status == 503 and body["status"] == 503
