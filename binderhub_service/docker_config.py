"""The ``auths`` of a docker ``config.json`` document, read in one place.

The registry client takes the user name and password for its host from it;
the redactor takes every secret value it holds.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass
from typing import Any

# Entry keys whose values are secrets as they stand.
_SECRET_KEYS = ("auth", "password", "identitytoken", "registrytoken")


@dataclass(frozen=True)
class RegistryAuth:
    """One entry of ``auths``: the registry host, its login (if any), its secrets."""

    host: str
    username: str | None
    password: str | None
    secrets: tuple[str, ...]


def _host(key: str) -> str:
    return urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/")[0]


def _decode(auth: str) -> tuple[str, str] | None:
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def registry_auths(config: dict[str, Any]) -> list[RegistryAuth]:
    """The well-formed entries of ``config["auths"]``; others are skipped."""
    auths = config.get("auths") if isinstance(config, dict) else None
    entries: list[RegistryAuth] = []
    for key, entry in (auths if isinstance(auths, dict) else {}).items():
        if not isinstance(key, str) or not isinstance(entry, dict):
            continue
        secrets = [v for k in _SECRET_KEYS if isinstance(v := entry.get(k), str) and v]
        login = _decode(entry["auth"]) if isinstance(entry.get("auth"), str) else None
        if login is None and isinstance(entry.get("username"), str) and entry["username"]:
            password = entry.get("password")
            login = (entry["username"], password if isinstance(password, str) else "")
        if login is not None and login[1]:
            secrets.append(login[1])
        username, password = login if login is not None else (None, None)
        entries.append(RegistryAuth(_host(key), username, password, tuple(secrets)))
    return entries


def credentials_for(config: dict[str, Any], host: str) -> tuple[str, str] | None:
    """User name and password for ``host``; None when the document has no login for it."""
    for entry in registry_auths(config):
        if entry.host == host and entry.username is not None:
            return entry.username, entry.password or ""
    return None
