import re

import pytest

from binderhub_service.naming import image_name, image_tag, split_image_name

# Docker's grammar for a repository path component and a tag.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
SHA = "0123456789abcdef0123456789abcdef01234567"


def assert_valid(name: str) -> None:
    host, repository, tag = split_image_name(name)
    assert all(re.fullmatch(COMPONENT, part) for part in repository.split("/")), name
    assert re.fullmatch(TAG, tag), name
    assert len((host + "/" if host else "") + repository) <= 255


@pytest.mark.parametrize(
    "slug",
    [
        "github.com/jupyterhub/binderhub",
        "GitHub.com/Org/Repo_With.Dots",
        "-leading/dash-",
        "x" * 1000,
        "ünïcödé/repo",
        "127.0.0.1:9418/repo.git",
    ],
)
def test_names_are_valid_and_bounded(slug):
    name = image_name("registry.example.org/binder-", slug, SHA)
    assert_valid(name)
    assert name == name.lower()
    assert name.endswith(":" + SHA)


def test_names_are_deterministic_and_distinct():
    a = image_name("p-", "github.com/org/repo", SHA)
    assert a == image_name("p-", "github.com/org/repo", SHA)
    assert a != image_name("p-", "github.com/org/repo2", SHA)
    # Escaping cannot merge two repositories: the hash keeps them apart.
    assert image_name("p-", "a/b", SHA) != image_name("p-", "a-2fb", SHA)
    # Truncated long slugs still differ.
    assert image_name("p-", "x" * 300 + "1", SHA) != image_name("p-", "x" * 300 + "2", SHA)


def test_tag_from_non_sha_ref():
    assert image_tag("12345.v2") == "12345.v2"
    assert re.fullmatch(TAG, image_tag("2024-01-01T10:00:00+00:00"))
    assert re.fullmatch(TAG, image_tag("..."))


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("localhost:5000/binder-x:abc", ("localhost:5000", "binder-x", "abc")),
        ("registry.example.org/a/b:t", ("registry.example.org", "a/b", "t")),
        ("localhost/x:t", ("localhost", "x", "t")),
        ("org/repo:t", (None, "org/repo", "t")),
        ("repo", (None, "repo", "latest")),
        ("host:5000/repo", ("host:5000", "repo", "latest")),
    ],
)
def test_split_image_name(name, parts):
    assert split_image_name(name) == parts
