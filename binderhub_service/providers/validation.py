"""Checks applied to every piece of a spec before it goes anywhere near a command.

Each check raises :class:`~binderhub_service.errors.InvalidSpec` with a message
that says what is wrong, without echoing control characters back.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from ..errors import InvalidSpec

MAX_URL_LENGTH = 2048
MAX_REF_LENGTH = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters git forbids in ref names (git check-ref-format), plus whitespace.
_BAD_REF_CHARS = re.compile(r"[\s~^:?*\[\\]")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def check_text(value: str, what: str, max_length: int) -> None:
    """Refuse empty, over-long, option-like or control-character input."""
    if not value:
        raise InvalidSpec(f"The {what} is empty.")
    if len(value) > max_length:
        raise InvalidSpec(
            f"The {what} is too long ({len(value)} characters, at most {max_length})."
        )
    if _CONTROL.search(value):
        raise InvalidSpec(f"The {what} contains control characters.")
    if value.startswith("-"):
        raise InvalidSpec(f"The {what} must not start with '-'.")


def check_ref(ref: str) -> str:
    """Validate a git ref, branch, tag or commit name."""
    check_text(ref, "ref", MAX_REF_LENGTH)
    if _BAD_REF_CHARS.search(ref) or ".." in ref or ref.endswith((".", "/", ".lock")):
        raise InvalidSpec(f"{ref!r} is not a valid git ref.")
    return ref


def check_repo_url(url: str, allowed_schemes: Iterable[str]) -> str:
    """Validate a repository URL: an allowed scheme, a host (except for file:), nothing odd."""
    check_text(url, "repository URL", MAX_URL_LENGTH)
    if "::" in url.split("/", 1)[0]:
        raise InvalidSpec("Git remote helpers such as 'ext::' are not allowed in repository URLs.")
    allowed = sorted({s.lower() for s in allowed_schemes})
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 (raises for a port out of range)
    except ValueError:
        raise InvalidSpec(
            "The repository URL is not valid: its host or port cannot be read."
        ) from None
    scheme = parsed.scheme.lower()
    if not scheme or "://" not in url:
        raise InvalidSpec(
            f"The repository URL must be a full URL with one of the schemes: {', '.join(allowed)}."
        )
    if scheme not in allowed:
        raise InvalidSpec(
            f"The URL scheme {scheme!r} is not allowed; allowed schemes: {', '.join(allowed)}."
        )
    if scheme != "file" and not parsed.hostname:
        raise InvalidSpec("The repository URL has no host.")
    if parsed.hostname and parsed.hostname.startswith("-"):
        raise InvalidSpec("The repository URL's host must not start with '-'.")
    if re.search(r"\s", url):
        raise InvalidSpec("The repository URL contains whitespace.")
    return url


def redact_text(text: str, url: str) -> str:
    """``text`` with the credentials of ``url`` (if any) replaced."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        text = text.replace(parts.password, "***")
    return text
