"""GitLabRepoProvider and GistRepoProvider against emulated APIs."""

from __future__ import annotations

import pytest

from binderhub_service.errors import Forbidden, InvalidSpec, RefNotFound, UpstreamError
from binderhub_service.providers import GistRepoProvider, GitLabRepoProvider

SHA = "c" * 40
OLD = "d" * 40


def test_gitlab_parse():
    provider = GitLabRepoProvider(denied_networks=[], hostname="gitlab.example.org")
    repo = provider.parse("group%2Fsub%2Fproject.git/feature%2Fx")
    assert repo.repo_url == "https://gitlab.example.org/group/sub/project.git"
    assert repo.ref == "feature/x"
    assert repo.slug == "gitlab.example.org/group/sub/project"
    assert provider.api_url == "https://gitlab.example.org/api/v4"
    assert provider.canonical_spec(repo) == "group%2Fsub%2Fproject/feature/x"


@pytest.mark.parametrize(
    "spec",
    [
        "project/main",
        "group%2Fproject",
        "%2Dgroup%2Fproject/main",
        "group%2F..%2Fproject/main",
        "group%2Fpro%0aject/main",
        "group%2Fproject/-main",
        "group%2Fproject/a%00b",
        "ext%3A%3Ash%2Fx/main",
    ],
)
def test_gitlab_parse_refuses(spec):
    with pytest.raises(InvalidSpec):
        GitLabRepoProvider(denied_networks=[]).parse(spec)


async def test_gitlab_resolve(upstream):
    provider = GitLabRepoProvider(
        denied_networks=[], api_url=upstream.url + "/api/v4", private_token="glpat"
    )
    upstream.routes["/api/v4/projects/group%2Fproject/repository/commits/feature%2Fx"] = (
        200,
        {},
        {"id": SHA},
    )
    repo = provider.parse("group%2Fproject/feature%2Fx")
    assert await provider.resolve_ref(repo) == SHA
    assert upstream.requests[0].headers["PRIVATE-TOKEN"] == "glpat"
    assert "glpat" not in upstream.requests[0].uri
    # The API token is not a clone credential unless the project is opted in.
    assert provider.git_credentials(repo) is None
    provider.clone_with_token = ["group/.*"]
    assert provider.git_credentials(repo) == "username=oauth2\\npassword=glpat"
    provider.clone_with_token = ["group"]
    assert provider.git_credentials(repo) is None


async def test_gitlab_missing_and_down(upstream, closed_port_url):
    provider = GitLabRepoProvider(denied_networks=[], api_url=upstream.url)
    with pytest.raises(RefNotFound):
        await provider.resolve_ref(provider.parse("group%2Fproject/nope"))
    down = GitLabRepoProvider(denied_networks=[], api_url=closed_port_url, resolve_timeout=2)
    with pytest.raises(UpstreamError, match="Try again later"):
        await down.resolve_ref(down.parse("group%2Fproject/main"))


def gist_body(public=True, owner="someone"):
    return {
        "public": public,
        "owner": {"login": owner},
        "history": [{"version": SHA}, {"version": OLD}],
    }


@pytest.mark.parametrize("spec", ["someone/abc123", "someone/abc123/HEAD", "Someone/abc123/main"])
def test_gist_parse(spec):
    repo = GistRepoProvider(denied_networks=[]).parse(spec)
    assert repo.repo_url == "https://gist.github.com/abc123.git"
    assert repo.slug == "gist.github.com/someone/abc123"


@pytest.mark.parametrize(
    "spec", ["someone", "someone/xyz", "-x/abc", "someone/abc/branch", "a/b/c/d", "someone/abc/-"]
)
def test_gist_parse_refuses(spec):
    with pytest.raises(InvalidSpec):
        GistRepoProvider(denied_networks=[]).parse(spec)


async def test_gist_latest_and_version(upstream):
    provider = GistRepoProvider(denied_networks=[], api_url=upstream.url)
    upstream.routes["/gists/abc123"] = (200, {"ETag": '"g1"'}, gist_body())
    assert await provider.resolve_ref(provider.parse("someone/abc123")) == SHA
    assert await provider.resolve_ref(provider.parse(f"someone/abc123/{OLD}")) == OLD
    # A verified version of the history is immutable: no further request.
    assert await provider.resolve_ref(provider.parse(f"someone/abc123/{OLD}")) == OLD
    assert len(upstream.requests) == 2
    assert upstream.requests[1].headers["If-None-Match"] == '"g1"'
    with pytest.raises(RefNotFound):
        await provider.resolve_ref(provider.parse(f"someone/abc123/{'e' * 40}"))


async def test_gist_secret_and_owner(upstream):
    upstream.routes["/gists/abc123"] = (200, {}, gist_body(public=False))
    provider = GistRepoProvider(denied_networks=[], api_url=upstream.url)
    with pytest.raises(Forbidden, match="Secret gists"):
        await provider.resolve_ref(provider.parse("someone/abc123"))
    allowing = GistRepoProvider(denied_networks=[], api_url=upstream.url, allow_secret_gist=True)
    assert await allowing.resolve_ref(allowing.parse("someone/abc123")) == SHA
    with pytest.raises(RefNotFound, match="does not belong"):
        await allowing.resolve_ref(allowing.parse("other/abc123"))


async def test_gist_missing(upstream):
    provider = GistRepoProvider(denied_networks=[], api_url=upstream.url)
    with pytest.raises(RefNotFound):
        await provider.resolve_ref(provider.parse("someone/fff"))
