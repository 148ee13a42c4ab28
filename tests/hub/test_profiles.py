"""The KubeSpawner profile_list example accepts exactly this service's image names."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from kubespawner import KubeSpawner
from traitlets.config import Config

from binderhub_service.naming import image_name
from binderhub_service.spawner import image_name_regex

EXAMPLE = Path(__file__).parents[2] / "docs/source/howto/kubespawner_profile_list.py"
SHA = "0123456789abcdef0123456789abcdef01234567"


def load_example() -> Config:
    config = Config()
    runpy.run_path(str(EXAMPLE), init_globals={"get_config": lambda: config})
    return config


def image_option() -> dict:
    profile = load_example().KubeSpawner.profile_list[0]
    return profile["profile_options"]["image"]


@pytest.mark.parametrize(
    "slug",
    [
        "git://127.0.0.1:9418/hello.git",
        "https://github.com/jupyterhub/binderhub-service",
        "gh/Org_Name/Repo.With.Dots",
        "x" * 400,
    ],
)
def test_regex_accepts_service_image_names(slug: str) -> None:
    name = image_name("registry.example.org/binder-", slug, SHA)
    assert re.match(image_option()["unlisted_choice"]["validation_regex"], name)


@pytest.mark.parametrize(
    "name",
    [
        "quay.io/jupyter/minimal-notebook:latest",
        "registry.example.org/other-repo:latest",
        "registry.example.org/binder-abc",
        "registry.example.org/binder-abc:tag\nevil",
        "registry.example.org/binder-abc:tag with space",
        "registry.example.org/binder-ABC:tag",
        "registry-example.org/binder-abc:tag",
    ],
)
def test_regex_rejects_other_images(name: str) -> None:
    assert not re.match(image_name_regex("registry.example.org/binder-"), name)


def test_fancy_profiles_dynamic_building_settings() -> None:
    option = image_option()
    assert option["dynamic_image_building"] == {"enabled": True}
    assert option["unlisted_choice"]["enabled"] is True


async def test_kubespawner_applies_a_built_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner validates the user's choice with the regex and sets its image.

    Its Kubernetes client is never used here: no cluster is configured.
    """
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)
    spawner = KubeSpawner(config=load_example(), _mock=True)
    name = image_name("registry.example.org/binder-", "gh/org/repo", SHA)
    spawner.user_options = {"profile": "custom", "image--unlisted-choice": name}
    await spawner.load_user_options()
    assert spawner.image == name

    spawner = KubeSpawner(config=load_example(), _mock=True)
    spawner.user_options = {"profile": "custom", "image--unlisted-choice": "evil/image:latest"}
    with pytest.raises(ValueError, match="validation regex"):
        await spawner.load_user_options()
