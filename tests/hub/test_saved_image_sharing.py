"""Saved images shared with a hub group, through a real JupyterHub and its proxy.

Group membership is the hub's: Bob's own token resolves to his groups, and the
spawner helpers' requests on his behalf make the service ask the hub with its
own token. The image is real: the base image pushed to the test registry.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from dockerspawner import DockerSpawner

from binderhub_service.saved_image_choices import SavedImageChoices
from tests.conftest import Registry

from .conftest import Hub

pytestmark = [pytest.mark.hub, pytest.mark.docker]


def call(hub: Hub, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        hub.service_url + "api/v1/" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def fresh_token(hub: Hub, user: str) -> str:
    """A token the service has not seen: its identity, groups included, is read anew."""
    token = hub.api("POST", f"users/{user}/tokens", {"note": "sharing"})
    assert isinstance(token, dict)
    return str(token["token"])


def push_image(base_image: str, registry: Registry) -> str:
    image = f"{registry.host}/binder-shared-{secrets.token_hex(4)}:1"
    for command in (["docker", "tag", base_image, image], ["docker", "push", "-q", image]):
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    return image


async def test_alice_shares_with_lab_bob_uses_it_carol_does_not_see_it(
    hub: Hub, registry: Registry, base_image: str
) -> None:
    image = push_image(base_image, registry)
    group = f"lab-{secrets.token_hex(3)}"
    hub.api("POST", f"groups/{group}", {"users": ["bob"]})
    alice, bob, carol = (fresh_token(hub, u) for u in ("alice", "bob", "carol"))
    name = f"shared-{secrets.token_hex(3)}"

    status, saved = call(hub, alice, "POST", "images", {"name": name, "image": image})
    assert status == 201 and saved["visibility"] == "private"
    status, shared = call(
        hub, alice, "PATCH", f"images/{name}", {"visibility": "groups", "groups": [group]}
    )
    assert status == 200 and shared["groups"] == [group]

    _, bobs = call(hub, bob, "GET", "images")
    assert {(i["owner"], i["name"], i["access"]) for i in bobs["images"]} >= {
        ("alice", name, "group")
    }
    _, carols = call(hub, carol, "GET", "images")
    assert name not in [i["name"] for i in carols["images"]]
    assert call(hub, carol, "GET", f"images/{name}?owner=alice")[0] == 404
    status, refused = call(
        hub, bob, "PATCH", f"images/{name}?owner=alice", {"visibility": "public"}
    )
    assert status == 403 and "owner" in refused["message"]

    # At spawn: the helper offers it to Bob (the service reads his groups from the hub),
    # DockerSpawner accepts his choice, and the use is counted.
    # A generous timeout: this checks what is offered, not how fast (the machine is shared).
    choices = SavedImageChoices(
        service_url=hub.service_url,
        api_token=hub.hook_token,
        timeout=120,
        log=logging.getLogger("tests.saved_image_choices"),
    )
    spawner = DockerSpawner(allowed_images=choices.images)
    spawner.user = SimpleNamespace(name="bob")
    assert await spawner.check_allowed(f"alice/{name}") == image
    spawner.user_options = {"image": f"alice/{name}"}
    await choices.record_use(spawner)
    _, used = call(hub, alice, "GET", f"images/{name}")
    assert used["use_count"] == 1 and used["last_used"]

    carols_spawner = DockerSpawner(allowed_images=choices.images)
    carols_spawner.user = SimpleNamespace(name="carol")
    with pytest.raises(Exception, match="not allowed"):
        await carols_spawner.check_allowed(f"alice/{name}")


def test_saving_an_image_missing_from_the_registry_is_refused(hub: Hub, registry: Registry) -> None:
    token = fresh_token(hub, "alice")
    missing = f"{registry.host}/binder-never-pushed-{secrets.token_hex(4)}:1"
    name = f"ghost-{secrets.token_hex(3)}"
    status, error = call(hub, token, "POST", "images", {"name": name, "image": missing})
    assert status == 400 and "There is no image" in error["message"]
    assert call(hub, token, "GET", f"images/{name}")[0] == 404
    elsewhere = {"name": name, "image": "quay.io/jupyter/base-notebook:latest"}
    status, error = call(hub, token, "POST", "images", elsewhere)
    assert status == 400 and "another registry" in error["message"]
