"""The fetch step's command lines, environments and the build container's, without I/O."""

from __future__ import annotations

import pytest

from binderhub_service.build_container import (
    OPERATOR_CONFIG_FILE,
    BuildContainer,
    docker_run_args,
    repo2docker_config,
)
from binderhub_service.fetch import (
    FetchFailed,
    clone_commands,
    git_environment,
    git_protocol_config,
    is_git,
)

SHA = "a" * 40


@pytest.mark.parametrize("scheme", ["https", "http", "git"])
def test_only_the_urls_own_transport_is_allowed(scheme):
    assert git_protocol_config(f"{scheme}://example.org/r.git") == [
        "-c",
        "protocol.allow=never",
        "-c",
        f"protocol.{scheme}.allow=always",
    ]


@pytest.mark.parametrize(
    "url", ["ssh://example.org/r.git", "file:///srv/r.git", "ext::sh -c id", "/srv/r.git"]
)
def test_other_transports_are_refused(url):
    with pytest.raises(FetchFailed):
        git_protocol_config(url)


def test_clone_commands_fetch_one_commit_without_submodules_or_hooks():
    init, fetch = clone_commands("git", "https://example.org/r.git", SHA, "/w/checkout")
    assert init[-3:] == ["--template=", "--", "/w/checkout"]
    assert fetch[-3:] == ["--", "https://example.org/r.git", SHA]
    for option in ("http.followRedirects=false", "submodule.recurse=false"):
        assert option in fetch
    assert "--no-recurse-submodules" in fetch


def test_git_environment_is_built_from_scratch(monkeypatch):
    monkeypatch.setenv("BINDERHUB_SERVICE_COOKIE_SECRET", "planted")
    env = git_environment("/w/home", "https://example.org/r.git", None)
    assert "planted" not in str(env)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CREDENTIAL_ENV" not in env
    with_credential = git_environment(
        "/w/home", "https://example.org/r.git", "username=a\\npassword=b"
    )
    assert with_credential["GIT_CREDENTIAL_ENV"] == "username=a\\npassword=b"
    assert with_credential["GIT_CONFIG_KEY_0"] == "credential.https://example.org.helper"


def test_git_based_requests():
    assert is_git(("repo2docker.contentproviders.Git",))
    assert is_git(())
    assert not is_git(("repo2docker.contentproviders.Zenodo",))


def container(**changes) -> BuildContainer:
    fields = dict(
        name="binderhub-build-1",
        image="binderhub-service:dev",
        build_id="1",
        work_dir="/data/builds",
        checkout="/data/builds/b1/checkout",
        config_dir="/data/builds/b1/config",
        engine_socket="/var/run/docker.sock",
        uid=1000,
        gid=1000,
        socket_gid=998,
        command=["repo2docker", "--no-run", "--", "/srv/repo"],
        operator_config="/etc/bhs/r2d.py",
        env={"A": "b"},
    )
    fields.update(changes)
    return BuildContainer(**fields)


def test_the_build_container_holds_the_checkout_and_the_engine_only():
    args = docker_run_args(container())
    joined = " ".join(args)
    for expected in (
        "--network none",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--read-only",
        "--pull never",
        "--user 1000:1000",
        "--group-add 998",
        "type=bind,source=/data/builds/b1/checkout,target=/srv/repo,readonly",
        "type=bind,source=/etc/bhs/r2d.py,target=/etc/binderhub-operator/repo2docker_config.py,readonly",
        "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--env A=b",
        "--env HOME=/tmp",
    ):
        assert expected in joined
    # Every variable has its value: a bare name would copy the service's own.
    env_values = [args[i + 1] for i, a in enumerate(args) if a == "--env"]
    assert all("=" in value for value in env_values)
    assert args[-6:] == [
        "--entrypoint",
        "repo2docker",
        "binderhub-service:dev",
        "--no-run",
        "--",
        "/srv/repo",
    ]
    assert "-v" not in args and "--privileged" not in args


def test_paths_that_would_split_a_mount_are_refused():
    with pytest.raises(ValueError):
        docker_run_args(container(checkout="/data/a,b"))


def test_the_build_config_uses_the_checkout_as_a_local_folder():
    text = repo2docker_config(OPERATOR_CONFIG_FILE)
    assert "load_subconfig('/etc/binderhub-operator/repo2docker_config.py')" in text
    assert text.rstrip().endswith("c.Repo2Docker.content_providers = [Local]")
    assert "load_subconfig" not in repo2docker_config(None)
