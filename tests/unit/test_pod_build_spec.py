"""The build pod program's spec and the environment of each of its steps (no I/O)."""

from __future__ import annotations

import json

import pytest

from binderhub_service.pod_build import (
    INVALID_SPEC,
    SPEC_ENV,
    BuildSpec,
    InvalidSpec,
    build_command,
    build_environment,
    main,
    parse_spec,
    push_environment,
    read_spec,
    relayed,
)
from binderhub_service.repo2docker import Repo2DockerOptions

R2D = Repo2DockerOptions(
    repo_url="https://git.example.org/org/repo",
    ref="a" * 40,
    image_name="registry.example.org/binder/org-repo:a",
    push=True,
    config_file="/etc/operator/repo2docker_config.py",
    extra_args=("--debug",),
)
SPEC = BuildSpec(
    repo2docker=R2D,
    content_provider="repo2docker.contentproviders.Git",
    registry_config_dir="/etc/binderhub-service/docker",
    env={"HTTPS_PROXY": "http://127.0.0.1:3128", "DOCKER_CONFIG": "/elsewhere"},
)
REQUIRED = {
    "repo_url": "https://git.example.org/org/repo",
    "ref": "main",
    "content_provider": "repo2docker.contentproviders.Git",
    "image_name": "example/image:1",
    "push": False,
    "user_id": 1000,
    "user_name": "jovyan",
}


def test_a_spec_reads_back_as_written() -> None:
    assert parse_spec(SPEC.to_json()) == SPEC


def test_only_the_required_fields_are_needed() -> None:
    spec = parse_spec(json.dumps(REQUIRED))
    assert spec.repo2docker.repo_url == REQUIRED["repo_url"]
    assert spec.registry_config_dir is None
    assert spec.repo2docker_command == ("repo2docker",)


@pytest.mark.parametrize(
    "change",
    [
        {"repo_url": ""},
        {"ref": 3},
        {"push": "yes"},
        {"user_id": -1},
        {"user_id": True},
        {"extra_args": "--debug"},
        {"env": {"A": 1}},
        {"repo2docker_command": []},
        {"fetch_timeout": 0},
        {"max_checkout_bytes": 1.5},
        {"config_file": 1},
        {"credential": "username=x\\npassword=y"},
    ],
)
def test_bad_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidSpec):
        parse_spec(json.dumps({**REQUIRED, **change}))


@pytest.mark.parametrize("text", ["", "not json", "[]", '"a"'])
def test_what_is_not_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(InvalidSpec):
        parse_spec(text)


def test_the_spec_comes_from_the_argument_or_the_environment() -> None:
    assert read_spec([SPEC.to_json()], {}) == SPEC
    assert read_spec([], {SPEC_ENV: SPEC.to_json()}) == SPEC
    with pytest.raises(InvalidSpec):
        read_spec([SPEC.to_json(), "more"], {})


def test_an_invalid_spec_ends_with_a_fixed_failure_line() -> None:
    lines: list[str] = []
    assert main(["{"], {}, lines.append) == 2
    assert [json.loads(line) for line in lines] == [{"phase": "failed", "message": INVALID_SPEC}]


def test_repo2docker_builds_the_checkout_and_never_pushes() -> None:
    command = build_command(SPEC, "/tmp/b/checkout", "/tmp/b/config/repo2docker_config.py")
    assert command[0] == "repo2docker"
    assert "--push" not in command
    assert command[-2:] == ["--", "/tmp/b/checkout"]
    assert command[command.index("--config") + 1] == "/tmp/b/config/repo2docker_config.py"
    assert "--debug" in command


def test_repo2docker_environment_is_built_from_scratch() -> None:
    env = build_environment(SPEC, "/tmp/b", "unix:///var/run/docker.sock")
    assert set(env) == {
        "PATH",
        "HOME",
        "LANG",
        "PYTHONUNBUFFERED",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "HTTPS_PROXY",
    }
    # The operator's environment cannot point repo2docker at the registry credentials.
    assert env["DOCKER_CONFIG"] == "/tmp/b/no-credentials"
    assert env["HOME"] == "/tmp/b/home"
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert "GIT_CREDENTIAL_ENV" not in env
    assert SPEC.registry_config_dir not in json.dumps(env)


def test_the_push_alone_sees_the_registry_credentials() -> None:
    env = push_environment(SPEC, "/tmp/b", "unix:///var/run/docker.sock")
    assert set(env) == {"PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CONFIG"}
    assert env["DOCKER_CONFIG"] == "/etc/binderhub-service/docker"
    no_registry = BuildSpec(repo2docker=R2D, content_provider=SPEC.content_provider)
    assert push_environment(no_registry, "/tmp/b", "x")["DOCKER_CONFIG"] == (
        "/tmp/b/no-credentials"
    )


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ('{"phase": "building", "message": "Step 1\\n"}\n', True),
        ("Traceback (most recent call last):\n", False),
        ("[1, 2]\n", False),
        ("\n", False),
    ],
)
def test_only_json_log_lines_are_relayed(line: str, kept: bool) -> None:
    assert (relayed(line) is not None) == kept
