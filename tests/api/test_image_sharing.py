"""Saved images through the REST API in process (fake executor): visibility, uses, and
what may be saved. Groups come from the test authenticator's ``X-Test-Groups`` header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.api.conftest import Api, api_app, make_service

IMAGE = "registry.example.org/binder-env:1"
LAB = ("lab",)


async def save(api: Api, name: str, user: str = "alice", **extra: Any) -> dict[str, Any]:
    api.executor.images.add(IMAGE)
    status, saved = await api.call("POST", "images", {"name": name, "image": IMAGE, **extra}, user)
    assert status == 201, saved
    return saved


async def test_sharing_with_a_group(api: Api) -> None:
    saved = await save(api, "env")
    assert (saved["visibility"], saved["groups"], saved["access"]) == ("private", [], "own")
    assert (await api.call("GET", "images/env?owner=alice", user="bob", groups=LAB))[0] == 404

    status, shared = await api.call(
        "PATCH", "images/env", {"visibility": "groups", "groups": ["lab"]}, user="alice"
    )
    assert status == 200 and shared["groups"] == ["lab"]

    _, bobs = await api.call("GET", "images", user="bob", groups=LAB)
    assert [(i["owner"], i["name"], i["access"]) for i in bobs["images"]] == [
        ("alice", "env", "group")
    ]
    assert bobs["images"][0]["groups"] is None  # shown to the owner and admins only
    status, one = await api.call("GET", "images/env?owner=alice", user="bob", groups=LAB)
    assert status == 200 and one["image"] == IMAGE
    assert (await api.call("GET", "images", user="carol", groups=("other",)))[1] == {"images": []}
    assert (await api.call("GET", "images/env?owner=alice", user="carol"))[0] == 404

    # Bob may use it, not change or delete it; Carol is told nothing exists.
    for method, body in (("PATCH", {"visibility": "public"}), ("DELETE", None)):
        status, error = await api.call(
            method, "images/env?owner=alice", body, user="bob", groups=LAB
        )
        assert status == 403 and "owner (alice)" in error["message"]
        assert (await api.call(method, "images/env?owner=alice", body, user="carol"))[0] == 404
    _, still = await api.call("GET", "images/env", user="alice")
    assert still["visibility"] == "groups"

    status, public = await api.call(
        "PATCH", "images/env?owner=alice", {"visibility": "public"}, user="root", admin=True
    )
    assert status == 200 and public["groups"] == [] and public["access"] == "public"
    _, carols = await api.call("GET", "images", user="carol")
    assert [i["access"] for i in carols["images"]] == ["public"]


async def test_uses_are_counted(api: Api) -> None:
    await save(api, "env", visibility="public")
    status, used = await api.call("POST", "images/env/uses?owner=alice", user="bob")
    assert status == 200 and used["use_count"] == 1 and used["last_used"].endswith("Z")
    await api.call("POST", "images/env/uses", user="alice")
    _, image = await api.call("GET", "images/env", user="alice")
    assert image["use_count"] == 2
    await save(api, "mine")
    assert (await api.call("POST", "images/mine/uses?owner=alice", user="bob"))[0] == 404
    _, mine = await api.call("GET", "images/mine", user="alice")
    assert mine["use_count"] == 0 and mine["last_used"] is None


async def test_bad_changes_are_refused_and_change_nothing(api: Api) -> None:
    await save(api, "env")
    for body in (
        {},
        {"visibility": "everyone"},
        {"visibility": "groups"},
        {"visibility": "groups", "groups": []},
        {"visibility": "public", "groups": ["lab"]},
        {"visibility": "groups", "groups": "lab"},
        {"visibility": "groups", "groups": ["bad\x00"]},
        {"visibility": "groups", "groups": [f"g{i}" for i in range(101)]},
        {"owner": "bob"},
        {"description": 5},
    ):
        status, error = await api.call("PATCH", "images/env", body, user="alice")
        assert status == 400 and error["message"], (body, error)
    _, image = await api.call("GET", "images/env", user="alice")
    assert (image["visibility"], image["groups"]) == ("private", [])
    status, changed = await api.call(
        "PATCH", "images/env", {"description": "new words"}, user="alice"
    )
    assert status == 200 and changed["description"] == "new words"


async def test_saving_an_image_that_does_not_exist_is_refused(api: Api) -> None:
    body = {"name": "ghost", "image": "registry.example.org/binder-ghost:1"}
    status, error = await api.call("POST", "images", body, user="alice")
    assert status == 400 and "There is no image" in error["message"]
    assert (await api.call("GET", "images", user="alice"))[1] == {"images": []}


async def test_images_of_other_registries_need_the_operators_leave(
    db_url: str, tmp_path: Path
) -> None:
    """With a registry configured (nothing listens there: no lookup is made), an image on
    another registry is refused, and accepted unchecked once the option allows it."""
    for allowed in (False, True):
        service = make_service(
            db_url,
            tmp_path,
            "c.DockerRegistry.url = 'http://127.0.0.1:9'",
            f"c.SavedImages.allow_other_registries = {allowed}",
        )
        await service.start_store()
        sock, port = bind_unused_port()
        server = HTTPServer(api_app(service))
        server.add_sockets([sock])
        api = Api(url=f"http://127.0.0.1:{port}/api/v1/", service=service)
        body = {"name": f"byo-{allowed}", "image": "quay.io/jupyter/base-notebook:2024-01-01"}
        status, answer = await api.call("POST", "images", body, user="alice")
        if allowed:
            assert status == 201 and answer["image"] == body["image"]
        else:
            assert status == 400 and "another registry" in answer["message"]
        server.stop()
        await service.build_manager.shutdown()
        await service.stop_store()
