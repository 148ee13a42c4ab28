"""Remembered answers from upstream hosts, so that a ref is not resolved twice needlessly.

Three kinds of entry, never mixed up:

- *immutable* answers (a full commit sha, a versioned DOI's record) can be
  reused without asking upstream again;
- *conditional* answers (what a branch pointed to, with the ETag upstream
  gave) are only reused after upstream confirmed them with ``304 Not Modified``.
  A moving ref is therefore never answered from memory alone;
- *expiring* answers (what a branch pointed to, when the operator chose to
  reuse a resolution for a few seconds) are reused until their deadline, never
  after it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Conditional:
    """An answer and the validator (ETag) upstream sent with it."""

    etag: str
    value: str


@dataclass(frozen=True)
class Expiring:
    """An answer and the time (``time.monotonic()``) after which it is not used."""

    expires: float
    value: str


class ResolutionCache:
    """A bounded least-recently-used store of immutable and conditional answers.

    One instance belongs to one provider; nothing is shared between providers
    or kept at class level.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._immutable: OrderedDict[Hashable, str] = OrderedDict()
        self._conditional: OrderedDict[Hashable, Conditional] = OrderedDict()
        self._expiring: OrderedDict[Hashable, Expiring] = OrderedDict()

    def get_immutable(self, key: Hashable) -> str | None:
        value = self._immutable.get(key)
        if value is not None:
            self._immutable.move_to_end(key)
        return value

    def set_immutable(self, key: Hashable, value: str) -> None:
        self._store(self._immutable, key, value)

    def get_conditional(self, key: Hashable) -> Conditional | None:
        """The last answer for ``key``: send its ETag upstream before using its value."""
        entry = self._conditional.get(key)
        if entry is not None:
            self._conditional.move_to_end(key)
        return entry

    def set_conditional(self, key: Hashable, etag: str, value: str) -> None:
        self._store(self._conditional, key, Conditional(etag, value))

    def get_expiring(self, key: Hashable) -> str | None:
        """The answer for ``key`` if its deadline has not passed."""
        entry = self._expiring.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._expiring[key]
            return None
        self._expiring.move_to_end(key)
        return entry.value

    def set_expiring(self, key: Hashable, value: str, seconds: float) -> None:
        """Reuse ``value`` for ``key`` during the next ``seconds``."""
        self._store(self._expiring, key, Expiring(time.monotonic() + seconds, value))

    def forget(self, key: Hashable) -> None:
        self._immutable.pop(key, None)
        self._conditional.pop(key, None)
        self._expiring.pop(key, None)

    def __len__(self) -> int:
        return len(self._immutable) + len(self._conditional) + len(self._expiring)

    def _store(self, table: OrderedDict, key: Hashable, value: object) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_entries:
            table.popitem(last=False)
