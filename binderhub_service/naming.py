"""Deterministic, registry-valid image names.

``<image_prefix><escaped slug>-<hash of slug>:<tag>``: the escaped slug keeps
names readable, the hash keeps distinct repositories apart after escaping and
truncation, and the tag is the resolved ref, so one commit has one image.
"""

from __future__ import annotations

import hashlib
import re
import string

import escapism

# Docker limits a repository path (host and name) to 255 characters.
MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128
SLUG_HASH_LENGTH = 6

_SAFE_CHARS = frozenset(string.ascii_lowercase + string.digits)
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def escape_slug(slug: str, max_length: int) -> str:
    """``slug`` as lowercase ``[a-z0-9-]``, truncated, with a short hash of the original."""
    digest = hashlib.sha256(slug.encode()).hexdigest()[:SLUG_HASH_LENGTH]
    escaped = escapism.escape(slug.lower(), safe=_SAFE_CHARS, escape_char="-")
    escaped = escaped[: max(0, max_length - SLUG_HASH_LENGTH - 1)].strip("-")
    return f"{escaped}-{digest}" if escaped else digest


def image_tag(resolved_ref: str) -> str:
    """A valid tag for a resolved ref (a sha stays as it is)."""
    tag = _TAG_CHARS.sub("-", resolved_ref)[:MAX_TAG_LENGTH].lstrip(".-")
    return tag or hashlib.sha256(resolved_ref.encode()).hexdigest()[:40]


def image_name(image_prefix: str, slug: str, resolved_ref: str) -> str:
    """The full image name (with tag) for a repository slug at a resolved ref."""
    repository = image_prefix + escape_slug(slug, MAX_NAME_LENGTH - len(image_prefix))
    return f"{repository.lower()}:{image_tag(resolved_ref)}"


def split_image_name(name: str) -> tuple[str | None, str, str]:
    """Split ``[host/]repository:tag`` into (registry host or None, repository, tag).

    The first path component is a registry host when it contains ``.`` or
    ``:`` or is ``localhost``, as Docker decides.
    """
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = name, "latest"
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return None, repository, tag
