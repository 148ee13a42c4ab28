"""Code blocks of the documentation's Markdown pages, for tests that run them as written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "source"

_FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: its info string (``bash``, ``python``, ``{literalinclude} ...``)."""

    info: str
    body: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.strip() else ""


def code_blocks(page: str, language: str | None = None) -> list[CodeBlock]:
    """The fenced code blocks of ``docs/source/<page>``, in order; only ``language`` if given."""
    text = (DOCS / page).read_text()
    blocks = [CodeBlock(m["info"].strip(), m["body"]) for m in _FENCE.finditer(text)]
    return [b for b in blocks if language is None or b.language == language]


def block_starting(page: str, first_line: str) -> CodeBlock:
    """The one block of ``page`` whose first line is ``first_line``."""
    found = [b for b in code_blocks(page) if b.body.splitlines()[:1] == [first_line]]
    assert len(found) == 1, f"{page}: {len(found)} blocks start with {first_line!r}"
    return found[0]
