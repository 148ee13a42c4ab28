"""Remembered answers from upstream hosts, so that a ref is not resolved twice needlessly.

Two kinds of entry, never mixed up:

- *immutable* answers (a full commit sha, a versioned DOI's record) can be
  reused without asking upstream again;
- *conditional* answers (what a branch pointed to, with the ETag upstream
  gave) are only reused after upstream confirmed them with ``304 Not Modified``.
  A moving ref is therefore never answered from memory alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Conditional:
    """An answer and the validator (ETag) upstream sent with it."""

    etag: str
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

    def forget(self, key: Hashable) -> None:
        self._immutable.pop(key, None)
        self._conditional.pop(key, None)

    def __len__(self) -> int:
        return len(self._immutable) + len(self._conditional)

    def _store(self, table: OrderedDict, key: Hashable, value: object) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_entries:
            table.popitem(last=False)
