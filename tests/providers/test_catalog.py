"""The catalog's policy (bans, allow list, per-spec options, disabled providers) and its listing."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from binderhub_service.errors import Forbidden, UnknownProvider
from binderhub_service.handlers.repoproviders import RepoProvidersHandler
from binderhub_service.providers import (
    GitHubRepoProvider,
    GitRepoProvider,
    RepoProviderCatalog,
)

ALL = {"gh", "gist", "git", "gl", "zenodo", "figshare", "hydroshare", "dataverse", "ckan"}


def test_default_providers():
    catalog = RepoProviderCatalog()
    assert set(catalog.providers) == ALL
    provider, repo = catalog.parse("gh", "org/repo/main")
    assert isinstance(provider, GitHubRepoProvider)
    assert repo.repo_url == "https://github.com/org/repo"


def test_disabled_provider():
    catalog = RepoProviderCatalog(provider_classes={"git": GitRepoProvider})
    with pytest.raises(UnknownProvider, match="knows: git"):
        catalog.get("gh")


async def test_banned_spec_refused_before_any_upstream_call(upstream):
    catalog = RepoProviderCatalog(
        banned_specs=["^gh/evil-org/.*"], banned_spec_message="Not here: see our policy."
    )
    catalog.get("gh").api_url = upstream.url
    for spec in ("evil-org/repo/main", "EVIL-ORG/repo/main", "Evil-Org/repo.git/HEAD"):
        with pytest.raises(Forbidden, match=r"Not here: see our policy\.") as info:
            catalog.parse("gh", spec)
        assert info.value.status_code == 403
    assert upstream.requests == []
    catalog.parse("gh", "good-org/repo/main")


def test_ban_matches_canonical_form():
    catalog = RepoProviderCatalog(banned_specs=[r"git/https%3A%2F%2Fbad\.example\.org%2F"])
    with pytest.raises(Forbidden):
        # Escaped differently from the pattern, still the same URL.
        catalog.parse("git", "https:%2F%2Fbad.example.org%2Frepo.git/main")


def test_allowed_specs():
    catalog = RepoProviderCatalog(
        allowed_specs=["gh/my-org/", "zenodo/"], banned_specs=["gh/my-org/secret"]
    )
    catalog.parse("gh", "My-Org/repo/main")
    catalog.parse("zenodo", "10.5281/zenodo.1")
    with pytest.raises(Forbidden):
        catalog.parse("gh", "other/repo/main")
    with pytest.raises(Forbidden):
        catalog.parse("gh", "my-org/secret/main")


def test_bad_pattern_is_a_config_error():
    with pytest.raises(ValueError, match="not a regular expression"):
        RepoProviderCatalog(banned_specs=["("])
    with pytest.raises(ValueError, match="pattern"):
        RepoProviderCatalog(spec_config=[{"config": {}}])


def test_spec_options():
    catalog = RepoProviderCatalog(
        spec_config=[
            {"pattern": "gh/my-org/.*", "config": {"quota": 10, "priority": 1}},
            {"pattern": "gh/my-org/big/", "config": {"quota": 100}},
        ]
    )
    assert catalog.spec_options("gh", "my-org/big/main") == {"quota": 100, "priority": 1}
    assert catalog.spec_options("gh", "MY-ORG/small/main") == {"quota": 10, "priority": 1}
    assert catalog.spec_options("gh", "other/repo/main") == {}


def test_custom_prefix_matches_policy_by_requested_prefix():
    catalog = RepoProviderCatalog(
        provider_classes={"github": GitHubRepoProvider}, banned_specs=["github/bad/"]
    )
    with pytest.raises(Forbidden):
        catalog.parse("github", "bad/repo/main")


async def test_repoproviders_handler():
    catalog = RepoProviderCatalog(
        provider_classes={"gh": GitHubRepoProvider, "git": GitRepoProvider}
    )
    app = Application([(r"/api/repoproviders", RepoProvidersHandler, {"catalog": catalog})])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/api/repoproviders")
    finally:
        server.stop()
        await server.close_all_connections()
    assert response.headers["Content-Type"] == "application/json"
    listing = json.loads(response.body)
    assert [p["id"] for p in listing] == ["gh", "git"]
    gh, git = listing
    assert gh["displayName"] == "GitHub"
    assert gh["ref"] == {"enabled": True, "default": "HEAD"}
    assert gh["spec"]["validateRegex"]
    assert "(?<repo>" in gh["detect"]["regex"]
    assert git["repo"]["urlEncode"] is True


def test_describe_data_providers():
    listing = {p["id"]: p for p in RepoProviderCatalog().describe()}
    assert set(listing) == ALL
    assert listing["zenodo"]["ref"] == {"enabled": False}
    assert listing["ckan"]["repo"]["urlEncode"] is True
    for entry in listing.values():
        assert entry["displayName"] and entry["repo"]["label"]
