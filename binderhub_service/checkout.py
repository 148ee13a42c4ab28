"""What a fetched repository may contain before anything reads it.

A checkout is code from a stranger. The build step reads its files (repo2docker
opens ``runtime.txt``, ``apt.txt``, ``environment.yml``, the ``Dockerfile``...),
so a link leading out of the checkout would make it read whatever the link
names. :func:`check_checkout` refuses every link whose target leaves the
checkout (absolute targets, ``..`` escapes, chains of links) and every entry
that is neither a regular file, a directory nor such an in-tree link. It only
reads directory entries and link targets; it never opens a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import BuildFailed
from .failures import FailureClass

# How many problems one message names; the rest are counted.
MAX_NAMED = 5
# Link targets are the repository's own text: shown, but never at length.
MAX_SHOWN = 120


class UnsafeCheckout(BuildFailed):
    """The repository holds something no build may read; nothing was built."""

    failure_class = FailureClass.INVALID_REPOSITORY


class CheckoutTooLarge(BuildFailed):
    """The repository is larger than the operator allows."""

    failure_class = FailureClass.INVALID_REPOSITORY


@dataclass(frozen=True)
class Problem:
    """One entry of a checkout that no build may see, by its path inside the checkout."""

    path: str
    reason: str

    def describe(self) -> str:
        return f"{self.path}: {self.reason}"


def _shown(text: str) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _entries(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``root`` (not following links), with its ``lstat``."""
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as it:
            for entry in it:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                yield entry.path, info


def find_problems(root: str) -> list[Problem]:
    """Every entry of the checkout at ``root`` that a build must not see.

    A link is allowed when the path it leads to, following every link on the
    way, stays inside ``root``; where it leads need not exist.
    """
    real_root = os.path.realpath(root)
    problems = []
    for path, info in _entries(root):
        relative = os.path.relpath(path, root)
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            if not _inside(os.path.realpath(path), real_root):
                problems.append(
                    Problem(_shown(relative), f"a link to {_shown(target)}, outside the repository")
                )
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            problems.append(
                Problem(_shown(relative), "neither a file, a directory nor a link inside it")
            )
    return sorted(problems, key=lambda p: p.path)


def check_checkout(root: str) -> None:
    """Raise :class:`UnsafeCheckout` with a user-facing message if the checkout has problems."""
    problems = find_problems(root)
    if not problems:
        return
    named = "; ".join(p.describe() for p in problems[:MAX_NAMED])
    more = len(problems) - MAX_NAMED
    if more > 0:
        named += f"; and {more} more"
    raise UnsafeCheckout(
        "The repository was not built: links must point inside the repository, and it "
        f"may hold only files, directories and such links. Found: {named}."
    )


def tree_size(root: str, limit: int) -> int:
    """Bytes the files below ``root`` take, counting stops once past ``limit``."""
    total = 0
    for _, info in _entries(root):
        if stat.S_ISREG(info.st_mode):
            total += info.st_size
            if total > limit:
                break
    return total


def check_size(root: str, limit: int) -> None:
    """Raise :class:`CheckoutTooLarge` if the files below ``root`` exceed ``limit`` bytes."""
    if tree_size(root, limit) > limit:
        raise CheckoutTooLarge(
            f"The repository is larger than this service builds ({limit / 2**20:g} MiB)."
        )
