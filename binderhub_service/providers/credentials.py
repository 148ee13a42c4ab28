"""Which repositories a provider clones with the operator's credential."""

from __future__ import annotations

import re


def check_patterns(patterns: list[str], name: str) -> list[str]:
    """``patterns`` if each is a regular expression; ``ValueError`` naming the bad one."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{name}: {pattern!r} is not a regular expression: {error}") from None
    return patterns


def clone_opted_in(patterns: list[str], identity: str) -> bool:
    """Whether the operator chose to clone ``identity`` (e.g. ``owner/repo``) with a credential.

    ``patterns`` are regular expressions matched against the whole identity,
    case-insensitively; an empty list opts nothing in.
    """
    return any(re.fullmatch(p, identity, re.IGNORECASE) for p in patterns)
