"""Text that is safe to store, log and send: no control characters, valid Unicode.

Repository content and tool output can hold any bytes. Before such text is
stored (PostgreSQL refuses NUL in text columns) or relayed, :func:`clean_text`
replaces every control character except tab and newline (carriage returns
become newlines) and every lone surrogate with U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CARRIAGE_RETURN = re.compile(r"\r\n?")


def clean_text(text: str) -> str:
    """``text`` with control characters (except ``\\t`` and ``\\n``) and surrogates replaced."""
    if text.isprintable():
        return text
    return _CONTROL.sub(REPLACEMENT, _CARRIAGE_RETURN.sub("\n", text))


def clean_value(value: Any) -> Any:
    """A JSON-like value with every string in it (keys included) cleaned."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value
