"""The saved-images how-to's spawner configurations, run as written with the real
KubeSpawner and DockerSpawner classes (no cluster, no engine). Their service URL is
replaced by a loopback port nothing listens on: the helpers answer their static
lists, as on a hub whose service is down."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from dockerspawner import DockerSpawner
from kubespawner import KubeSpawner
from traitlets.config import Config

from binderhub_service.saved_image_choices import SavedImageChoices
from tests.docs_snippets import code_blocks

PAGE = "howto/saved-images.md"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_block(marker: str) -> Config:
    (block,) = [b for b in code_blocks(PAGE, "python") if marker in b.body]
    source = block.body.replace("127.0.0.1:8000", f"127.0.0.1:{closed_port()}")
    assert source != block.body
    config = Config()
    namespace = {
        "c": config,
        "os": SimpleNamespace(environ={"BINDERHUB_SPAWN_HOOK_TOKEN": "t"}),
        "SavedImageChoices": SavedImageChoices,
    }
    exec(compile(source, PAGE, "exec"), namespace)
    return config


async def test_kubespawner_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)
    config = run_block("c.KubeSpawner.profile_list")
    spawner = KubeSpawner(config=config, _mock=True)
    spawner.user = SimpleNamespace(name="bob")
    spawner.user_options = {"profile": "python", "image": "base"}
    await spawner.load_user_options()
    assert spawner.image == "quay.io/jupyter/base-notebook:2024-07-01"
    assert config.Spawner.pre_spawn_hook.__name__ == "record_use"


async def test_dockerspawner_configuration() -> None:
    config = run_block("c.DockerSpawner.allowed_images")
    spawner = DockerSpawner(config=config)
    spawner.user = SimpleNamespace(name="bob")
    image = await spawner.check_allowed("Base image")
    assert image == "quay.io/jupyter/base-notebook:2024-07-01"
