"""A planted credential never shows: not in messages, logs, slugs, specs or reprs."""

from __future__ import annotations

import logging
import urllib.parse

import pytest

from binderhub_service.errors import ServiceError
from binderhub_service.git_credentials import credential_env_value
from binderhub_service.providers import RepoProviderCatalog

SECRET = "pl4nted-cr3dential"


@pytest.fixture
def catalog(upstream):
    catalog = RepoProviderCatalog(denied_networks=[])
    github = catalog.get("gh")
    github.api_url = upstream.url
    github.access_token = SECRET
    github.clone_with_token = ["org/repo"]
    gitlab = catalog.get("gl")
    gitlab.api_url = upstream.url
    gitlab.private_token = SECRET
    gitlab.clone_with_token = ["group/project"]
    catalog.get("git").credentials_by_host = {
        "127.0.0.1": {"username": "builder", "password": SECRET}
    }
    return catalog


async def test_planted_credential_never_shows(catalog, upstream, closed_port_url, caplog):
    caplog.set_level(logging.DEBUG)
    upstream.routes["/repos/org/repo/commits/boom"] = (500, {}, {"message": SECRET})
    upstream.routes["/repos/org/repo/commits/gone"] = (404, {}, {"message": SECRET})
    upstream.routes["/repos/org/repo/commits/main"] = (
        401,
        {"WWW-Authenticate": SECRET},
        {"message": "Bad credentials"},
    )
    git_url = urllib.parse.quote(closed_port_url.replace("http:", "https:") + "/r.git", safe="")
    # Each case with the user name its credential goes with (all opted in to clone with it).
    cases = [
        ("gh", "org/repo/boom", "x-access-token"),
        ("gh", "org/repo/gone", "x-access-token"),
        ("gh", "org/repo/main", "x-access-token"),
        ("gl", "group%2Fproject/main", "oauth2"),
        ("git", f"{git_url}/main", "builder"),
    ]
    shown = []
    for prefix, spec, username in cases:
        provider, repo = catalog.parse(prefix, spec)
        shown += [repr(repo), repo.slug, repo.repo_url, repr(provider), str(provider.describe())]
        with pytest.raises(ServiceError) as info:
            await provider.resolve_ref(repo)
        shown += [info.value.message, str(info.value)]
        # The secret is handed over only where it belongs: the credential env value.
        assert provider.git_credentials(repo) == credential_env_value(username, SECRET)
    # Not opted in: the token stays with the API calls.
    catalog.get("gh").clone_with_token = []
    assert catalog.get("gh").git_credentials(catalog.parse("gh", "org/repo/main")[1]) is None
    shown += [record.getMessage() for record in caplog.records]
    shown.append(caplog.text)
    assert all(SECRET not in text for text in shown)
    assert any("401" in text or "credentials" in text for text in shown)
