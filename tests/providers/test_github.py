"""GitHubRepoProvider: spec parsing and resolution against an emulated GitHub API."""

from __future__ import annotations

import time

import pytest

from binderhub_service.errors import InvalidSpec, RefNotFound, UpstreamError
from binderhub_service.providers import GitHubRepoProvider

SHA = "a" * 40
SHA2 = "b" * 40


@pytest.fixture
def provider(upstream):
    return GitHubRepoProvider(denied_networks=[], api_url=upstream.url, resolve_timeout=2)


@pytest.mark.parametrize(
    ("spec", "url", "ref", "slug"),
    [
        ("org/repo/main", "https://github.com/org/repo", "main", "github.com/org/repo"),
        ("Org/Repo.git/HEAD", "https://github.com/Org/Repo", "HEAD", "github.com/org/repo"),
        (
            "o-1/r_.x/feature/a/b",
            "https://github.com/o-1/r_.x",
            "feature/a/b",
            "github.com/o-1/r_.x",
        ),
    ],
)
def test_parse(spec, url, ref, slug):
    repo = GitHubRepoProvider(denied_networks=[]).parse(spec)
    assert (repo.repo_url, repo.ref, repo.slug, repo.provider) == (url, ref, slug, "gh")


def test_parse_uses_clone_url_base():
    provider = GitHubRepoProvider(denied_networks=[], clone_url_base="https://ghe.example.org/")
    repo = provider.parse("org/repo/main")
    assert repo.repo_url == "https://ghe.example.org/org/repo"
    assert repo.slug == "ghe.example.org/org/repo"


@pytest.mark.parametrize(
    "spec",
    [
        "org/repo",
        "org",
        "org//main",
        "-org/repo/main",
        "org-/repo/main",
        "o--x/repo/main",
        "org/re po/main",
        "org/../main",
        "org/repo/-main",
        "org/repo/ma\x00in",
        "org/repo/ma\nin",
        "org/repo/a..b",
        "org/repo/" + "x" * 300,
        "o" * 40 + "/repo/main",
        "ext::sh/repo/main",
        "org/repo;rm/main",
    ],
)
def test_parse_refuses(spec):
    with pytest.raises(InvalidSpec):
        GitHubRepoProvider(denied_networks=[]).parse(spec)


def test_parse_suggests_head():
    with pytest.raises(InvalidSpec, match='"org/repo/HEAD"'):
        GitHubRepoProvider(denied_networks=[]).parse("org/repo")


async def test_full_sha_needs_no_call(provider, upstream):
    assert await provider.resolve_ref(provider.parse(f"org/repo/{SHA}")) == SHA
    assert upstream.requests == []


async def test_resolve_branch_with_etag(provider, upstream):
    state = {"sha": SHA, "etag": '"v1"'}

    def commits(request):
        if request.headers.get("If-None-Match") == state["etag"]:
            return 304, {"ETag": state["etag"]}, None
        return 200, {"ETag": state["etag"]}, {"sha": state["sha"]}

    upstream.routes["/repos/org/repo/commits/feature/x"] = commits
    repo = provider.parse("org/repo/feature/x")
    assert await provider.resolve_ref(repo) == SHA
    assert "If-None-Match" not in upstream.requests[0].headers

    # The second lookup asks again, conditionally, and reuses the sha on 304.
    assert await provider.resolve_ref(repo) == SHA
    assert upstream.requests[1].headers["If-None-Match"] == '"v1"'

    # The branch moved: upstream answers 200 with a new ETag, never the cached sha.
    state.update(sha=SHA2, etag='"v2"')
    assert await provider.resolve_ref(repo) == SHA2
    assert len(upstream.requests) == 3


async def test_access_token_header(upstream):
    provider = GitHubRepoProvider(denied_networks=[], api_url=upstream.url, access_token="tok")
    upstream.routes["/repos/org/repo/commits/main"] = (200, {}, {"sha": SHA})
    await provider.resolve_ref(provider.parse("org/repo/main"))
    assert upstream.requests[0].headers["Authorization"] == "token tok"


async def test_no_token_no_authorization(provider, upstream):
    upstream.routes["/repos/org/repo/commits/main"] = (200, {}, {"sha": SHA})
    await provider.resolve_ref(provider.parse("org/repo/main"))
    assert "Authorization" not in upstream.requests[0].headers


@pytest.mark.parametrize("status", [404, 422])
async def test_missing_ref(provider, upstream, status):
    upstream.routes["/repos/org/repo/commits/nope"] = (status, {}, {"message": "No commit"})
    with pytest.raises(RefNotFound, match="nope"):
        await provider.resolve_ref(provider.parse("org/repo/nope"))


@pytest.mark.parametrize("status", [403, 429])
async def test_rate_limited(provider, upstream, status):
    reset = int(time.time()) + 600
    upstream.routes["/repos/org/repo/commits/main"] = (
        status,
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "60", "X-RateLimit-Reset": str(reset)},
        {"message": "API rate limit exceeded"},
    )
    with pytest.raises(
        UpstreamError, match=r"rate limit.*resets at \d\d:\d\d UTC \(in about 10 minutes\)"
    ) as info:
        await provider.resolve_ref(provider.parse("org/repo/main"))
    assert info.value.status_code == 503


async def test_forbidden_without_rate_limit_is_upstream_error(provider, upstream):
    upstream.routes["/repos/org/repo/commits/main"] = (
        403,
        {"X-RateLimit-Remaining": "42", "X-RateLimit-Limit": "60"},
        {"message": "nope"},
    )
    with pytest.raises(UpstreamError, match="unexpected answer"):
        await provider.resolve_ref(provider.parse("org/repo/main"))


async def test_answer_without_sha(provider, upstream):
    upstream.routes["/repos/org/repo/commits/main"] = (200, {}, {"commit": {}})
    with pytest.raises(UpstreamError):
        await provider.resolve_ref(provider.parse("org/repo/main"))


async def test_upstream_down(closed_port_url):
    provider = GitHubRepoProvider(denied_networks=[], api_url=closed_port_url, resolve_timeout=2)
    host = closed_port_url.split("://")[1]
    with pytest.raises(UpstreamError, match=f"connect to {host}.*Try again later"):
        await provider.resolve_ref(provider.parse("org/repo/main"))


async def test_upstream_slow(upstream):
    async def slow(request):
        await upstream.hang.wait()

    upstream.routes["/repos/org/repo/commits/main"] = slow
    provider = GitHubRepoProvider(denied_networks=[], api_url=upstream.url, resolve_timeout=0.2)
    with pytest.raises(UpstreamError, match=f"{upstream.host} did not answer within 0.2 seconds"):
        await provider.resolve_ref(provider.parse("org/repo/main"))


def test_git_credentials_and_content_providers():
    assert GitHubRepoProvider().git_credentials(GitHubRepoProvider().parse("o/r/main")) is None
    # The API token is not a clone credential until the operator opts a repository in.
    provider = GitHubRepoProvider(access_token="tok")
    assert provider.git_credentials(provider.parse("o/r/main")) is None
    provider = GitHubRepoProvider(access_token="tok", clone_with_token=["o/private-.*"])
    assert provider.git_credentials(provider.parse("o/r/main")) is None
    assert provider.git_credentials(provider.parse("O/Private-Repo/main")) == (
        "username=x-access-token\\npassword=tok"
    )
    with pytest.raises(ValueError, match="not a regular expression"):
        GitHubRepoProvider(clone_with_token=["("])
    assert provider.repo2docker_content_providers() == ["repo2docker.contentproviders.Git"]
