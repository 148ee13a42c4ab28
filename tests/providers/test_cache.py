"""ResolutionCache and the GIT_CREDENTIAL_ENV format."""

from __future__ import annotations

import pytest

from binderhub_service.git_credentials import credential_env_value, git_credential_env
from binderhub_service.providers.cache import ResolutionCache


def test_immutable_and_conditional_entries_are_separate():
    cache = ResolutionCache(max_entries=2)
    cache.set_immutable("k", "sha")
    assert cache.get_conditional("k") is None
    cache.set_conditional("k", '"e"', "sha2")
    assert cache.get_immutable("k") == "sha"
    entry = cache.get_conditional("k")
    assert entry is not None and (entry.etag, entry.value) == ('"e"', "sha2")
    cache.forget("k")
    assert len(cache) == 0


def test_expiring_entries_are_used_until_their_deadline_only():
    cache = ResolutionCache(max_entries=2)
    cache.set_expiring("branch", "sha-now", 60)
    cache.set_expiring("gone", "sha-old", 0)
    assert cache.get_expiring("branch") == "sha-now"
    assert cache.get_immutable("branch") is None and cache.get_conditional("branch") is None
    assert cache.get_expiring("gone") is None
    assert len(cache) == 1
    cache.forget("branch")
    assert cache.get_expiring("branch") is None


def test_least_recently_used_is_dropped():
    cache = ResolutionCache(max_entries=2)
    cache.set_immutable("a", "1")
    cache.set_immutable("b", "2")
    assert cache.get_immutable("a") == "1"
    cache.set_immutable("c", "3")
    assert cache.get_immutable("b") is None
    assert cache.get_immutable("a") == "1"
    with pytest.raises(ValueError):
        ResolutionCache(0)


def test_credential_env_value():
    assert credential_env_value("u", "p\\q") == "username=u\\npassword=p\\\\q"
    for bad in ("", "a b", "a\nb"):
        with pytest.raises(ValueError):
            credential_env_value("u", bad)


def test_helper_is_scoped_to_origin():
    env = git_credential_env("v", "https://git.example.org:8443/a/b.git")
    assert env["GIT_CONFIG_KEY_0"] == "credential.https://git.example.org:8443.helper"
    assert env["GIT_CREDENTIAL_ENV"] == "v"
