"""The fetch step against a real git daemon on loopback (no container engine needed)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from binderhub_service.checkout import CheckoutTooLarge, UnsafeCheckout
from binderhub_service.errors import BuildFailed
from binderhub_service.events import BuildEvent
from binderhub_service.fetch import Fetcher, FetchFailed, FetchSettings, Source
from binderhub_service.repo2docker import GIT_CONTENT_PROVIDER

from .conftest import GitServer


def wrapped_git(tmp_path: Path) -> tuple[str, Path]:
    """A git that records each invocation's environment, then runs the real git."""
    record = tmp_path / "git-calls.jsonl"
    script = tmp_path / "git"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}) + '\\n')\n"
        "os.execvp('git', ['git', *sys.argv[1:]])\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), record


def fetcher(git: str = "git", **settings) -> tuple[Fetcher, list[str]]:
    logged: list[str] = []
    return Fetcher(FetchSettings(git_executable=git, **settings), logged.append), logged


async def test_a_clone_checks_out_the_exact_commit(git_server: GitServer, tmp_path):
    url, first = git_server.make_repo("fetch-exact", {"a.txt": "one"})
    git_server.make_repo("fetch-exact", {"a.txt": "two"})
    events: list[BuildEvent] = []
    f, _ = fetcher()
    checkout = await f.fetch(Source(url, first, GIT_CONTENT_PROVIDER), str(tmp_path), events.append)
    assert Path(checkout, "a.txt").read_text() == "one"
    assert all(str(tmp_path) not in e.message for e in events)


async def test_git_runs_with_an_environment_built_from_scratch(
    git_server: GitServer, tmp_path, monkeypatch
):
    monkeypatch.setenv("BHS_PLANTED_SECRET", "planted-value")
    url, sha = git_server.make_repo("fetch-env", {"a.txt": "x"})
    git, record = wrapped_git(tmp_path)
    f, _ = fetcher(git)
    credential = "username=u\\npassword=p"
    work = tmp_path / "work"
    work.mkdir()
    await f.fetch(Source(url, sha, GIT_CONTENT_PROVIDER, credential), str(work), lambda e: None)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [
        c["argv"][c["argv"].index("-C") + 2] if "-C" in c["argv"] else "init" for c in calls
    ] == [
        "init",
        "fetch",
        "checkout",
    ]
    for call in calls:
        assert "BHS_PLANTED_SECRET" not in call["env"]
        assert call["env"]["GIT_CONFIG_NOSYSTEM"] == "1"
        assert "protocol.allow=never" in call["argv"]
        assert "protocol.git.allow=always" in call["argv"]
    # The credential is only in the step that talks to the server.
    assert [("GIT_CREDENTIAL_ENV" in c["env"]) for c in calls] == [False, True, False]


@pytest.mark.parametrize(
    "url", ["file:///etc", "ssh://127.0.0.1/repo.git", "ext::sh -c touch% /tmp/x"]
)
async def test_transports_other_than_https_http_and_git_are_refused(url, tmp_path):
    f, _ = fetcher()
    with pytest.raises(FetchFailed):
        await f.fetch(Source(url, "a" * 40, GIT_CONTENT_PROVIDER), str(tmp_path), lambda e: None)
    assert not (tmp_path / "checkout").exists()


async def test_the_url_check_runs_before_any_connection(git_server: GitServer, tmp_path):
    url, sha = git_server.make_repo("fetch-checked", {"a.txt": "x"})
    git, record = wrapped_git(tmp_path)
    checked: list[str] = []

    async def refuse(candidate: str) -> None:
        checked.append(candidate)
        raise BuildFailed("This address is not allowed.")

    f = Fetcher(FetchSettings(git_executable=git), lambda text: None, check_url=refuse)
    with pytest.raises(BuildFailed, match="not allowed"):
        await f.fetch(Source(url, sha, GIT_CONTENT_PROVIDER), str(tmp_path), lambda e: None)
    assert checked == [url]
    assert not record.exists()


async def test_an_unknown_commit_fails_clearly(git_server: GitServer, tmp_path):
    url, _ = git_server.make_repo("fetch-missing", {"a.txt": "x"})
    f, logged = fetcher()
    with pytest.raises(FetchFailed) as error:
        await f.fetch(Source(url, "b" * 40, GIT_CONTENT_PROVIDER), str(tmp_path), lambda e: None)
    assert "Could not fetch" in error.value.message
    assert str(tmp_path) not in error.value.message
    assert logged


async def test_a_link_out_of_the_checkout_fails_the_fetch(git_server: GitServer, tmp_path):
    git_server.make_repo("fetch-link", {"a.txt": "x"})
    os.symlink("/etc/passwd", git_server.root / "work" / "fetch-link" / "runtime.txt")
    url, sha = git_server.make_repo("fetch-link", {})
    f, _ = fetcher()
    with pytest.raises(UnsafeCheckout, match=re.escape("runtime.txt: a link to /etc/passwd")):
        await f.fetch(Source(url, sha, GIT_CONTENT_PROVIDER), str(tmp_path), lambda e: None)


async def test_the_size_bound_stops_a_large_fetch(git_server: GitServer, tmp_path):
    url, sha = git_server.make_repo("fetch-large", {"big.txt": "x" * 300_000})
    f, _ = fetcher(max_bytes=100_000)
    with pytest.raises(CheckoutTooLarge):
        await f.fetch(Source(url, sha, GIT_CONTENT_PROVIDER), str(tmp_path), lambda e: None)


async def test_a_record_fetch_with_an_unknown_provider_is_refused(tmp_path):
    f, _ = fetcher()
    with pytest.raises(FetchFailed):
        await f.fetch(
            Source("https://example.org/x", "", "repo2docker.contentproviders.Mercurial"),
            str(tmp_path),
            lambda e: None,
        )


async def test_a_record_the_content_provider_does_not_recognise_fails_clearly(tmp_path):
    """repo2docker's Zenodo provider in the child process: it inspects the URL, fetches nothing."""
    f, logged = fetcher()
    source = Source("https://127.0.0.1:9/record/1", "", "repo2docker.contentproviders.Zenodo")
    with pytest.raises(
        FetchFailed, match=re.escape("Could not fetch https://127.0.0.1:9/record/1")
    ):
        await f.fetch(source, str(tmp_path), lambda e: None)
    assert "does not recognise the record" in logged[0]
