"""GitRepoProvider against a real git daemon, and how it hands credentials to git."""

from __future__ import annotations

import os
import stat
import subprocess
import urllib.parse

import pytest

from binderhub_service.errors import InvalidSpec, RefNotFound
from binderhub_service.git_credentials import git_credential_env
from binderhub_service.providers import GitRepoProvider


def spec(url, ref):
    return f"{urllib.parse.quote(url, safe='')}/{urllib.parse.quote(ref, safe='')}"


@pytest.mark.parametrize(
    ("ref", "commit"),
    [("main", "main"), ("v1", "v1"), ("feature/x", "feature/x"), ("HEAD", "main")],
)
async def test_resolve_against_git_daemon(git_server, ref, commit):
    provider = GitRepoProvider(denied_networks=[], resolve_timeout=10)
    repo = provider.parse(spec(git_server.url, ref))
    assert await provider.resolve_ref(repo) == git_server.commits[commit]


async def test_missing_ref(git_server):
    provider = GitRepoProvider(denied_networks=[], resolve_timeout=10)
    with pytest.raises(RefNotFound, match="nope"):
        await provider.resolve_ref(provider.parse(spec(git_server.url, "nope")))


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "file:///etc",
        "https://user:secret@git.example.org/repo.git",
        "-https://git.example.org/repo.git",
        "https://git.example.org/re\npo.git",
    ],
)
def test_parse_refuses(url):
    with pytest.raises(InvalidSpec):
        GitRepoProvider(denied_networks=[]).parse(spec(url, "main"))


CREDENTIALS = {"git.example.org": {"username": "builder", "password": "pl4nted-s3cret"}}


def test_git_credentials_by_host():
    provider = GitRepoProvider(denied_networks=[], credentials_by_host=CREDENTIALS)
    https = provider.parse(spec("https://git.example.org/team/repo.git", "main"))
    assert provider.git_credentials(https) == "username=builder\\npassword=pl4nted-s3cret"
    other = provider.parse(spec("https://git.other.org/team/repo.git", "main"))
    assert provider.git_credentials(other) is None
    anonymous = provider.parse(spec("git://git.example.org/team/repo.git", "main"))
    assert provider.git_credentials(anonymous) is None


def test_credentials_refuse_unsafe_values():
    with pytest.raises(ValueError, match="whitespace"):
        GitRepoProvider(
            denied_networks=[], credentials_by_host={"h": {"username": "u", "password": "a b"}}
        )


def test_credential_helper_answers_git(tmp_path):
    """The helper git runs prints what repo2docker's `echo -e $GIT_CREDENTIAL_ENV` would."""
    value = "username=builder\\npassword=p\\\\w"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | git_credential_env(
        value, "https://git.example.org/team/repo.git"
    )
    env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=git.example.org\n\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "username=builder\n" in done.stdout
    assert "password=p\\w\n" in done.stdout
    # Another host gets nothing from the helper.
    other = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=evil.example.org\n\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert "pl4nted" not in other.stdout and "builder" not in other.stdout


async def test_ls_remote_gets_credentials_only_through_the_environment(tmp_path):
    """The secret reaches git through its environment, never its arguments."""
    fake_git = tmp_path / "git"
    record = tmp_path / "record"
    fake_git.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {record}.args\n'
        f'printf "%s" "$GIT_CREDENTIAL_ENV" > {record}.env\n'
        f"printf '{'f' * 40}\\trefs/heads/main\\n'\n"
    )
    fake_git.chmod(fake_git.stat().st_mode | stat.S_IEXEC)
    provider = GitRepoProvider(
        denied_networks=[], credentials_by_host=CREDENTIALS, git_executable=str(fake_git)
    )
    repo = provider.parse(spec("https://git.example.org/team/repo.git", "main"))
    assert await provider.resolve_ref(repo) == "f" * 40
    args = (tmp_path / "record.args").read_text()
    assert "pl4nted" not in args
    assert "https://git.example.org/team/repo.git" in args
    assert (tmp_path / "record.env").read_text() == "username=builder\\npassword=pl4nted-s3cret"
