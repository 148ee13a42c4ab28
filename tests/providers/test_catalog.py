"""The catalog's policy (bans, allow list, per-spec options, disabled providers) and its listing."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from binderhub_service.errors import Forbidden, InvalidSpec, UnknownProvider
from binderhub_service.handlers.repoproviders import RepoProvidersHandler
from binderhub_service.providers import (
    GitHubRepoProvider,
    GitRepoProvider,
    RepoProviderCatalog,
)

ALL = {"gh", "gist", "git", "gl", "zenodo", "figshare", "hydroshare", "dataverse", "ckan"}


def test_default_providers():
    catalog = RepoProviderCatalog(denied_networks=[])
    assert set(catalog.providers) == ALL
    provider, repo = catalog.parse("gh", "org/repo/main")
    assert isinstance(provider, GitHubRepoProvider)
    assert repo.repo_url == "https://github.com/org/repo"


def test_disabled_provider():
    catalog = RepoProviderCatalog(denied_networks=[], provider_classes={"git": GitRepoProvider})
    with pytest.raises(UnknownProvider, match="knows: git"):
        catalog.get("gh")


async def test_banned_spec_refused_before_any_upstream_call(upstream):
    catalog = RepoProviderCatalog(
        denied_networks=[],
        banned_specs=["^gh/evil-org/.*"],
        banned_spec_message="Not here: see our policy.",
    )
    catalog.get("gh").api_url = upstream.url
    for spec in ("evil-org/repo/main", "EVIL-ORG/repo/main", "Evil-Org/repo.git/HEAD"):
        with pytest.raises(Forbidden, match=r"Not here: see our policy\.") as info:
            catalog.parse("gh", spec)
        assert info.value.status_code == 403
    assert upstream.requests == []
    catalog.parse("gh", "good-org/repo/main")


def test_ban_matches_canonical_form():
    catalog = RepoProviderCatalog(
        denied_networks=[], banned_specs=[r"git/https%3A%2F%2Fbad\.example\.org%2F"]
    )
    with pytest.raises(Forbidden):
        # Escaped differently from the pattern, still the same URL.
        catalog.parse("git", "https:%2F%2Fbad.example.org%2Frepo.git/main")


def test_allowed_specs():
    catalog = RepoProviderCatalog(
        denied_networks=[],
        allowed_specs=["gh/my-org/", "zenodo/"],
        banned_specs=["gh/my-org/secret"],
    )
    catalog.parse("gh", "My-Org/repo/main")
    catalog.parse("zenodo", "10.5281/zenodo.1")
    with pytest.raises(Forbidden):
        catalog.parse("gh", "other/repo/main")
    with pytest.raises(Forbidden):
        catalog.parse("gh", "my-org/secret/main")


def test_bad_pattern_is_a_config_error():
    with pytest.raises(ValueError, match="not a regular expression"):
        RepoProviderCatalog(denied_networks=[], banned_specs=["("])


def test_custom_prefix_matches_policy_by_requested_prefix():
    catalog = RepoProviderCatalog(
        denied_networks=[],
        provider_classes={"github": GitHubRepoProvider},
        banned_specs=["github/bad/"],
    )
    with pytest.raises(Forbidden):
        catalog.parse("github", "bad/repo/main")


async def test_repoproviders_handler():
    catalog = RepoProviderCatalog(
        denied_networks=[], provider_classes={"gh": GitHubRepoProvider, "git": GitRepoProvider}
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
    listing = {p["id"]: p for p in RepoProviderCatalog(denied_networks=[]).describe()}
    assert set(listing) == ALL
    assert listing["zenodo"]["ref"] == {"enabled": False}
    assert listing["ckan"]["repo"]["urlEncode"] is True
    for entry in listing.values():
        assert entry["displayName"] and entry["repo"]["label"]


@pytest.mark.parametrize(
    "url",
    [
        "https://bad.example.org/team/repo.git",
        "https://bad.example.org:443/team/repo.git",
        "https://bad.example.org//team//repo.git",
        "https://bad.example.org./team/repo.git",
        "https://someone@bad.example.org/team/repo.git",
        "HTTPS://BAD.EXAMPLE.ORG/team/repo.git",
        "https://BAD.example.org/team/repo/",
        "git://bad.example.org/team/repo.git",
        "git://bad.example.org:9418/team/repo",
        "http://bad.example.org:80/team/repo.git",
        "https://bad.example.org/%74eam/repo.git",
    ],
)
def test_ban_list_bypass_spellings_are_banned(url):
    catalog = RepoProviderCatalog(banned_specs=[r"git/https%3A%2F%2Fbad\.example\.org%2F"])
    catalog.get("git").allowed_schemes = ["https", "http", "git"]
    with pytest.raises(Forbidden):
        catalog.parse("git", urllib.parse.quote(url, safe="") + "/main")
    catalog.parse("git", urllib.parse.quote("https://good.example.org/r.git", safe="") + "/main")


@pytest.mark.parametrize(
    "url",
    [
        "https://good.example.org@evil.example.org/team/repo.git",
        "https://good.example.org%2F@evil.example.org/team/repo.git",
        "https://evil.example.org/good.example.org/repo.git",
    ],
)
def test_allow_list_matches_the_repository_not_its_spelling(url):
    catalog = RepoProviderCatalog(allowed_specs=[r"git/https%3A%2F%2Fgood\.example\.org%2F"])
    with pytest.raises(Forbidden):
        catalog.parse("git", urllib.parse.quote(url, safe="") + "/main")
    catalog.parse("git", urllib.parse.quote("git://good.example.org/r.git", safe="") + "/main")


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("git", "https://example.org:99999/repo.git"),
        ("git", "https://example.org:-1/repo.git"),
        ("git", "https://exa\uff03mple.org/repo.git"),
        ("git", "https://exa\u2100mple.org/repo.git"),
        ("git", "https://[::1/repo.git"),
        ("ckan", "https://ckan.example.org:70000/dataset/x"),
        ("ckan", "https://ckan\uff0fexample.org/dataset/x"),
    ],
)
def test_unreadable_hosts_and_ports_are_invalid_specs(prefix, url):
    catalog = RepoProviderCatalog()
    escaped = urllib.parse.quote(url, safe="")
    spec = escaped + "/main" if prefix == "git" else escaped
    with pytest.raises(InvalidSpec) as info:
        catalog.parse(prefix, spec)
    assert info.value.status_code == 400
