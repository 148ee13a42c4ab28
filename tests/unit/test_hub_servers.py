"""Reading the images of running servers out of the hub's user models."""

from __future__ import annotations

import re

from binderhub_service.hub_servers import IMAGE_OPTION, images_in_users
from binderhub_service.spawner import image_name_regex

OURS = re.compile(image_name_regex("reg.example.org/binder-"))


def test_string_options_naming_our_images_count() -> None:
    users = [
        {
            "name": "alice",
            "servers": {
                "": {
                    "stopped": False,
                    "user_options": {IMAGE_OPTION: "reg.example.org/binder-a:1"},
                },
                "two": {
                    "user_options": {
                        "profile": "custom",
                        "image--unlisted-choice": "reg.example.org/binder-b:2",
                        "list": ["reg.example.org/binder-c:3", 4],
                    }
                },
            },
        },
        {"name": "bob", "servers": {"": {"user_options": {"image": "elsewhere/binder-d:4"}}}},
    ]
    assert images_in_users(users, OURS) == {
        "reg.example.org/binder-a:1",
        "reg.example.org/binder-b:2",
        "reg.example.org/binder-c:3",
    }


def test_stopped_servers_and_odd_models_count_nothing() -> None:
    users = [
        {"servers": {"": {"stopped": True, "user_options": {"x": "reg.example.org/binder-a:1"}}}},
        {"servers": None},
        {"name": "no-servers"},
        "not a user",
        {"servers": {"": "not a server"}},
    ]
    assert images_in_users(users, OURS) == set()
