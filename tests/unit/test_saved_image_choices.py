"""The saved-image spawner helpers with the real KubeSpawner and DockerSpawner classes.

No cluster and no container engine: only the spawners' option handling runs
(``load_user_options``, ``check_allowed``, the options form). The service is
a real HTTP server on loopback that either answers a listing or never answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from dockerspawner import DockerSpawner
from kubespawner import KubeSpawner

from binderhub_service.saved_image_choices import (
    SavedImageChoices,
    add_to_profiles,
    parse_choice_key,
)

SAVED = {"owner": "alice", "name": "env", "image": "127.0.0.1:5000/binder-env:1"}
STATIC_PROFILES = [
    {
        "display_name": "Python",
        "slug": "python",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {
                        "display_name": "Base",
                        "default": True,
                        "kubespawner_override": {"image": "base:1"},
                    }
                },
            }
        },
    }
]
# Generous: only a hang would reach it. The helpers' own bound is ``timeout``.
HANG_GUARD = 60


class Listing(BaseHTTPRequestHandler):
    """Answers every listing with :data:`SAVED` and records each request's path; refuses
    the token ``refused`` with 403."""

    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.headers.get("Authorization") == "token refused":
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"images": [SAVED]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/binder/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A service that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/services/binder/"
    listener.close()


def kubespawner(monkeypatch: pytest.MonkeyPatch, choices: SavedImageChoices) -> KubeSpawner:
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)
    spawner = KubeSpawner(_mock=True)
    spawner.profile_list = choices.profiles
    spawner.user = SimpleNamespace(name="bob")
    return spawner


def dockerspawner(choices: SavedImageChoices) -> DockerSpawner:
    spawner = DockerSpawner(allowed_images=choices.images)
    spawner.user = SimpleNamespace(name="bob")
    return spawner


def test_choice_keys() -> None:
    assert parse_choice_key("alice/env") == ("alice", "env")
    assert parse_choice_key("a/b/env") == ("a/b", "env")
    for value in ("base", "/env", "alice/", None, 5):
        assert parse_choice_key(value) is None


def test_profiles_get_a_new_option_when_missing() -> None:
    profiles = add_to_profiles([{"display_name": "P", "slug": "p"}], [SAVED], "", "image")
    assert profiles[0]["profile_options"]["image"]["choices"]["alice/env"] == {
        "display_name": "env (alice)",
        "kubespawner_override": {"image": SAVED["image"]},
    }
    assert add_to_profiles(STATIC_PROFILES, [SAVED], "other", "image") == STATIC_PROFILES


async def test_kubespawner_starts_a_saved_image(
    monkeypatch: pytest.MonkeyPatch, listing_url: str
) -> None:
    choices = SavedImageChoices(
        service_url=listing_url, api_token="t", static_profiles=STATIC_PROFILES
    )
    spawner = kubespawner(monkeypatch, choices)
    spawner.user_options = {"profile": "python", "image": "alice/env"}
    await spawner.load_user_options()
    assert spawner.image == SAVED["image"]
    assert Listing.paths[-1] == "/services/binder/api/v1/images?on_behalf_of=bob"
    form = await spawner._render_options_form_dynamically(spawner)
    assert "alice/env" in form and "env (alice)" in form
    # The static choice stays the default.
    spawner = kubespawner(monkeypatch, choices)
    spawner.user_options = {"profile": "python"}
    await spawner.load_user_options()
    assert spawner.image == "base:1"


async def test_dockerspawner_allows_a_saved_image(listing_url: str) -> None:
    choices = SavedImageChoices(service_url=listing_url, api_token="t", static_images=["base:1"])
    spawner = dockerspawner(choices)
    assert await spawner.check_allowed("alice/env") == SAVED["image"]
    assert await spawner.check_allowed("base:1") == "base:1"
    assert "alice/env" in spawner.options_form


async def test_service_down_gives_the_static_lists(
    monkeypatch: pytest.MonkeyPatch, silent_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A service that never answers: both helpers answer the static list after their
    timeout, log a warning, and answer at once while the retry pause lasts."""
    choices = SavedImageChoices(
        service_url=silent_url,
        api_token="t",
        timeout=0.5,
        static_profiles=STATIC_PROFILES,
        static_images=["base:1"],
    )
    spawner = kubespawner(monkeypatch, choices)
    spawner.user_options = {"profile": "python"}
    with caplog.at_level(logging.WARNING):
        profiles = await asyncio.wait_for(choices.profiles(spawner), HANG_GUARD)
    assert profiles == STATIC_PROFILES
    assert "offering the static list" in caplog.text
    await asyncio.wait_for(spawner.load_user_options(), HANG_GUARD)
    assert spawner.image == "base:1"

    fresh = SavedImageChoices(
        service_url=silent_url, api_token="t", timeout=0.5, static_images=["base:1"]
    )
    docker = dockerspawner(fresh)
    allowed = await asyncio.wait_for(asyncio.to_thread(fresh.images, docker), HANG_GUARD)
    assert allowed == {"base:1": "base:1"}
    assert await docker.check_allowed("base:1") == "base:1"
    with pytest.raises(Exception, match="not in allowed list"):
        await docker.check_allowed("alice/env")
    # A spawn with a saved image is not held up by counting its use.
    docker.user_options = {"image": "alice/env"}
    await asyncio.wait_for(fresh.record_use(docker), HANG_GUARD)


async def test_closed_port_gives_the_static_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    choices = SavedImageChoices(
        service_url=f"http://127.0.0.1:{port}/", static_profiles=STATIC_PROFILES
    )
    spawner = kubespawner(monkeypatch, choices)
    assert await asyncio.wait_for(choices.profiles(spawner), HANG_GUARD) == STATIC_PROFILES


async def test_a_refusal_gives_the_static_list_without_pausing(
    monkeypatch: pytest.MonkeyPatch, listing_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    choices = SavedImageChoices(
        service_url=listing_url, api_token="refused", static_profiles=STATIC_PROFILES
    )
    spawner = kubespawner(monkeypatch, choices)
    with caplog.at_level(logging.WARNING):
        assert await choices.profiles(spawner) == STATIC_PROFILES
    assert "refused" in caplog.text
    choices.api_token = "t"
    profiles = await choices.profiles(spawner)
    assert "alice/env" in profiles[0]["profile_options"]["image"]["choices"]
