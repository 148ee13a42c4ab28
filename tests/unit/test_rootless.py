"""A rootless engine, as the local executor sees it: detection, socket and build user."""

from __future__ import annotations

import pytest

from binderhub_service.build_container import docker_run_args
from binderhub_service.executors.local import LocalDockerExecutor, is_rootless

from .test_fetch_commands import container


@pytest.mark.parametrize(
    ("options", "rootless"),
    [
        ('["name=seccomp,profile=default","name=rootless"]', True),
        ('["name=seccomp,profile=default","name=cgroupns"]', False),
        ("[]", False),
        ("null", False),
        ("not json", False),
        ('{"name": "rootless"}', False),
    ],
)
def test_rootless_is_read_from_the_security_options(options, rootless):
    assert is_rootless(options) is rootless


def test_the_socket_defaults_to_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert LocalDockerExecutor().engine_socket == "/run/user/1000/docker.sock"


@pytest.mark.parametrize("host", [None, "tcp://127.0.0.1:2375", "unix://"])
def test_the_socket_defaults_to_the_system_engine(monkeypatch, host):
    if host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", host)
    assert LocalDockerExecutor().engine_socket == "/var/run/docker.sock"


def test_a_configured_socket_wins(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    executor = LocalDockerExecutor(engine_socket="/srv/engine.sock")
    assert executor.engine_socket == "/srv/engine.sock"


def test_a_rootless_build_container_runs_as_the_namespace_root_without_extra_groups():
    args = docker_run_args(container(uid=0, gid=0, socket_gid=0))
    assert args[args.index("--user") + 1] == "0:0"
    assert "--group-add" not in args
    assert "--cap-drop" in args and args[args.index("--cap-drop") + 1] == "ALL"
