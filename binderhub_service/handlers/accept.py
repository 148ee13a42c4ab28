"""Parsing of the HTTP ``Accept`` header (RFC 9110 media ranges)."""

from __future__ import annotations


def accepted_media_ranges(header: str) -> dict[str, float]:
    """Media ranges of an ``Accept`` header with their quality values.

    Parameters other than ``q`` are ignored; a malformed ``q`` counts as 1.
    """
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        if "/" not in media_range:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 1.0
        ranges[media_range.lower()] = max(quality, ranges.get(media_range.lower(), 0.0))
    return ranges


def accepts_event_stream(header: str | None) -> bool:
    """Whether the client explicitly accepts ``text/event-stream``."""
    if not header:
        return False
    return accepted_media_ranges(header).get("text/event-stream", 0.0) > 0
