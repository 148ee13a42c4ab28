import urllib.parse

import pytest

from binderhub_service.errors import InvalidSpec, RefNotFound
from binderhub_service.providers.git import GitRepoProvider, choose_ref

SHA1 = "1" * 40
SHA2 = "2" * 40
SHA3 = "3" * 40


def spec(url: str, ref: str = "main") -> str:
    return urllib.parse.quote(url, safe="") + "/" + urllib.parse.quote(ref, safe="")


def test_parse_a_git_spec():
    repo = GitRepoProvider(denied_networks=[]).parse(
        spec("https://example.org/org/repo.git", "feature/x")
    )
    assert repo.repo_url == "https://example.org/org/repo.git"
    assert repo.ref == "feature/x"
    assert repo.slug == "example.org/org/repo"
    assert repo.provider == "git"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("no-slash", "git spec looks like"),
        (spec("ext::sh -c id"), "ext::"),
        (spec("file:///etc/passwd"), "not allowed"),
        (spec("ftp://example.org/repo"), "not allowed"),
        (spec("example.org/repo"), "full URL"),
        (spec("https:///repo"), "no host"),
        (spec("https://-oProxyCommand=x/repo"), "host"),
        (spec("-https://example.org/repo"), "must not start with '-'"),
        (spec("https://example.org/repo", "-main"), "must not start with '-'"),
        (spec("https://example.org/repo", "ma\nin"), "control characters"),
        (spec("https://example.org/re\x00po"), "control characters"),
        (spec("https://example.org/repo", "a..b"), "not a valid git ref"),
        (spec("https://example.org/repo", "x" * 300), "too long"),
        (spec("https://example.org/" + "x" * 3000), "too long"),
        (spec("https://example.org/a b"), "whitespace"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(raw, words):
    with pytest.raises(InvalidSpec) as error:
        GitRepoProvider(denied_networks=[]).parse(raw)
    assert words in error.value.message
    assert error.value.status_code == 400


def test_file_urls_only_when_allowed():
    provider = GitRepoProvider(denied_networks=[], allowed_schemes=["file"])
    assert provider.parse(spec("file:///srv/repo")).repo_url == "file:///srv/repo"


def test_choose_ref_prefers_branches_then_peeled_tags():
    listing = "\n".join(
        [
            f"{SHA1}\tHEAD",
            f"{SHA1}\trefs/heads/main",
            f"{SHA2}\trefs/tags/v1",
            f"{SHA3}\trefs/tags/v1^{{}}",
            f"{SHA2}\trefs/pull/1/head",
        ]
    )
    assert choose_ref(listing, "main") == SHA1
    assert choose_ref(listing, "HEAD") == SHA1
    assert choose_ref(listing, "v1") == SHA3
    assert choose_ref(listing, "refs/pull/1/head") == SHA2
    assert choose_ref(listing, "missing") is None


async def test_full_sha_resolves_without_asking_upstream():
    provider = GitRepoProvider(denied_networks=[], git_executable="/nonexistent/git")
    repo = provider.parse(spec("https://example.org/repo", SHA1))
    assert await provider.resolve_ref(repo) == SHA1


async def test_resolution_against_a_real_git_daemon(git_server):
    url, sha = git_server.make_repo("resolve-me", {"README": "hi"})
    provider = GitRepoProvider(denied_networks=[])
    assert await provider.resolve_ref(provider.parse(spec(url, "main"))) == sha
    assert await provider.resolve_ref(provider.parse(spec(url, "HEAD"))) == sha
    with pytest.raises(RefNotFound):
        await provider.resolve_ref(provider.parse(spec(url, "no-such-branch")))
