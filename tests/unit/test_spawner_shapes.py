"""What launches give the spawner, accepted by the real KubeSpawner and DockerSpawner classes.

The spawners are the real classes from their packages; nothing starts (no
cluster, no Docker engine): KubeSpawner's ``load_user_options`` and
DockerSpawner's ``check_allowed`` are what a hub runs on the options first.
KubeSpawner's Kubernetes client is never used: its loading is replaced, since
no cluster is configured.
"""

from __future__ import annotations

from typing import Any

import pytest
from dockerspawner import DockerSpawner
from kubespawner import KubeSpawner
from traitlets import TraitError
from traitlets.config import Config

from binderhub_service.launch import Launcher, LaunchRequest
from binderhub_service.naming import image_name
from tests.docs_snippets import block_starting
from tests.hub.test_profiles import load_example

IMAGE = "registry.example.org/binder-hello-abc123:0123456789abcdef"

PROFILES = [
    {"display_name": "Small", "slug": "small", "kubespawner_override": {"image": "small:1"}},
    {
        "display_name": "From a repository",
        "slug": "binder",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Built image",
                    "validation_regex": r"^registry\.example\.org/binder-",
                    "kubespawner_override": {"image": "{value}"},
                },
                "choices": {"base": {"display_name": "Base", "kubespawner_override": {}}},
            }
        },
    },
]


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)


def launch_options(**config: Any) -> dict[str, Any]:
    launcher = Launcher(**config)
    return launcher.user_options(LaunchRequest(user="alice", token="t", image=IMAGE))


async def test_kubespawner_runs_the_image_of_its_unlisted_choice() -> None:
    options = launch_options(profile="binder")
    assert options == {"profile": "binder", "image--unlisted-choice": IMAGE}
    spawner = KubeSpawner(_mock=True, profile_list=PROFILES)
    spawner.user_options = options
    await spawner.load_user_options()
    assert spawner.image == IMAGE


async def test_the_documented_profile_list_takes_launched_images() -> None:
    spawner = KubeSpawner(config=load_example(), _mock=True)
    name = image_name("registry.example.org/binder-", "gh/org/repo", "a" * 40)
    spawner.user_options = Launcher(profile="custom").user_options(
        LaunchRequest(user="alice", token="t", image=name)
    )
    await spawner.load_user_options()
    assert spawner.image == name


async def test_kubespawner_refuses_an_image_its_regex_does_not_allow() -> None:
    spawner = KubeSpawner(_mock=True, profile_list=PROFILES)
    spawner.user_options = Launcher(profile="binder").user_options(
        LaunchRequest(user="alice", token="t", image="elsewhere.example/x:1")
    )
    with pytest.raises(ValueError, match="validation regex"):
        await spawner.load_user_options()


async def test_kubespawner_default_profile_when_none_is_named() -> None:
    profiles = [PROFILES[1]]
    spawner = KubeSpawner(_mock=True, profile_list=profiles)
    spawner.user_options = launch_options(image_option="image")
    await spawner.load_user_options()
    assert spawner.image == IMAGE


async def test_dockerspawner_runs_an_allowed_image() -> None:
    options = launch_options(spawner_options="dockerspawner")
    assert options == {"image": IMAGE}
    spawner = DockerSpawner(allowed_images=[IMAGE])
    spawner.user_options = options
    assert await spawner.check_allowed(spawner.user_options["image"]) == IMAGE


async def test_dockerspawner_refuses_an_image_it_does_not_allow() -> None:
    spawner = DockerSpawner(allowed_images=["other:1"])
    with pytest.raises(Exception, match="not in allowed list"):
        await spawner.check_allowed(launch_options(spawner_options="dockerspawner")["image"])


def test_a_callable_decides_the_options() -> None:
    def options(image: str, launch: LaunchRequest) -> dict[str, str]:
        return {"image": image, "user": launch.user}

    assert launch_options(spawner_options=options) == {"image": IMAGE, "user": "alice"}


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(TraitError):
        Launcher(spawner_options="slurm")


async def test_the_howtos_dockerspawner_config_allows_only_this_services_images() -> None:
    """The how-to's ``allowed_images`` block, run as written, with the launch's options."""
    first_line = "# jupyterhub_config.py: allow this service's images (or list them)"
    snippet = block_starting("howto/launch-links.md", first_line)
    config = Config()
    exec(snippet.body, {"c": config})
    name = image_name("registry.example.org/binder-", "gh/org/repo", "b" * 40)
    spawner = DockerSpawner(config=config)
    spawner.user_options = launch_options(spawner_options="dockerspawner") | {"image": name}
    assert await spawner.check_allowed(spawner.user_options["image"]) == name
    spawner.user_options = {"image": "elsewhere.example/evil:1"}
    with pytest.raises(Exception, match="not allowed"):
        await spawner.check_allowed(spawner.user_options["image"])
