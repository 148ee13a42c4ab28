"""Where a launch link sends the browser, and the named servers it picks (pure functions)."""

from __future__ import annotations

import pytest
from jupyterhub.slugs import is_valid_safe_slug

from binderhub_service.errors import InvalidSpec
from binderhub_service.launch import missing_launch_scope
from binderhub_service.launch_paths import launch_path, server_name, server_url


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({}, ""),
        ({"urlpath": "lab"}, "lab"),
        ({"urlpath": "/lab/tree/x.ipynb"}, "lab/tree/x.ipynb"),
        ({"urlpath": "lab/tree/x.ipynb"}, "lab/tree/x.ipynb"),
        ({"urlpath": "rstudio/?a=1&b=2#top"}, "rstudio/?a=1&b=2#top"),
        ({"urlpath": "tree/a b.ipynb"}, "tree/a%20b.ipynb"),
        ({"labpath": "notebooks/x.ipynb"}, "doc/tree/notebooks/x.ipynb"),
        ({"labpath": "dir/"}, "doc/tree/dir"),
        ({"filepath": "index.ipynb"}, "tree/index.ipynb"),
        ({"filepath": "a#b?.md"}, "tree/a%23b%3F.md"),
        ({"labpath": "x.ipynb", "urlpath": "lab"}, "doc/tree/x.ipynb"),
        ({"filepath": "x.ipynb", "urlpath": "lab"}, "tree/x.ipynb"),
    ],
)
def test_paths_map_as_binderhub_does(query: dict[str, str], path: str) -> None:
    assert launch_path(query) == path


@pytest.mark.parametrize(
    "query",
    [
        {"urlpath": "https://evil.example/"},
        {"urlpath": "//evil.example/x"},
        {"urlpath": "javascript:alert(1)"},
        {"urlpath": "http:evil.example"},
        {"urlpath": "/\\evil.example"},
        {"urlpath": "\\\\evil.example"},
        {"urlpath": "lab/../../../hub/logout"},
        {"urlpath": "%2e%2e/%2e%2e/hub/token"},
        {"urlpath": "\tjavascript:alert(1)"},
        {"urlpath": "lab\nx"},
        {"labpath": "../../x"},
        {"filepath": "a/../../b"},
        {"urlpath": "x" * 2001},
    ],
)
def test_off_server_values_are_refused(query: dict[str, str]) -> None:
    with pytest.raises(InvalidSpec) as info:
        launch_path(query)
    assert next(iter(query)) in info.value.message
    assert "not allowed" in info.value.message


def test_server_url_joins_the_servers_root_and_the_path() -> None:
    assert server_url("/user/alice/", "lab/tree/x.ipynb") == "/user/alice/lab/tree/x.ipynb"
    assert server_url("/user/alice/work", "") == "/user/alice/work/"


@pytest.mark.parametrize(
    "repo",
    [
        "https://github.com/org/My_Repo.git",
        "git://127.0.0.1:9418/hello.git",
        "https://example.org/" + "long-name-" * 20,
        "https://example.org/2024--data",
        "https://example.org/---",
        "localhost:5000/binder-abc:1234",
        "",
    ],
)
def test_server_names_are_valid_hub_slugs(repo: str) -> None:
    name = server_name(repo)
    assert is_valid_safe_slug(name), name
    assert server_name(repo) == name


def test_server_names_tell_similar_repositories_apart() -> None:
    a = server_name("https://github.com/org-a/data")
    b = server_name("https://github.com/org-b/data")
    assert a.startswith("data-") and b.startswith("data-") and a != b


@pytest.mark.parametrize(
    ("scopes", "missing"),
    [
        ({"servers!user=alice", "read:servers!user=alice"}, None),
        ({"servers", "read:servers"}, None),
        ({"read:servers!user=alice"}, "servers!user"),
        ({"servers!user=bob", "read:servers!user=bob"}, "servers!user"),
        ({"servers!user=alice"}, "read:servers!user"),
        (set(), "servers!user"),
    ],
)
def test_the_scopes_a_launch_needs(scopes: set[str], missing: str | None) -> None:
    assert missing_launch_scope("alice", frozenset(scopes)) == missing
