"""Recognising log lines again across reads: pure functions."""

from __future__ import annotations

import pytest

from binderhub_service.executors.pod_log import LogCursor, parse_timestamp, since_time

SECOND = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", SECOND),
        ("2026-01-01T00:00:00.5Z", SECOND + 500_000_000),
        ("2026-01-01T00:00:00.000000001Z", SECOND + 1),
        ("2026-01-01T01:00:00.25+01:00", SECOND + 250_000_000),
        ("not-a-time", None),
        ("2026-01-01T00:00:00.1234567891Z", None),
    ],
)
def test_parse_timestamp(text: str, expected: int | None) -> None:
    assert parse_timestamp(text) == expected


def test_since_time_rounds_down_to_the_second() -> None:
    assert since_time(SECOND + 999_999_999) == "2026-01-01T00:00:00Z"


def test_cursor_relays_each_line_once_across_reads() -> None:
    log = [
        "2026-01-01T00:00:00.1Z a",
        "2026-01-01T00:00:00.1Z a",  # the same text and time: still another line
        "2026-01-01T00:00:00.2Z b",
        "2026-01-01T00:00:01Z c",
        "2026-01-01T00:00:01Z ",
    ]
    cursor = LogCursor()
    cursor.new_read()
    assert [cursor.accept(line) for line in log[:2]] == ["a", "a"]
    assert cursor.since() == "2026-01-01T00:00:00Z"
    cursor.new_read()
    assert [cursor.accept(line) for line in log[:3]] == [None, None, "b"]
    # A read from sinceTime (or after log rotation) starts later in the log.
    cursor.new_read()
    assert [cursor.accept(line) for line in log[2:]] == [None, "c", ""]
    assert cursor.since() == "2026-01-01T00:00:01Z"


def test_cursor_starts_at_the_beginning() -> None:
    assert LogCursor().since() is None


def test_lines_without_timestamp_take_the_previous_one() -> None:
    cursor = LogCursor()
    cursor.new_read()
    assert cursor.accept("2026-01-01T00:00:00Z x") == "x"
    assert cursor.accept("plain") == "plain"
    cursor.new_read()
    assert cursor.accept("2026-01-01T00:00:00Z x") is None
    assert cursor.accept("plain") is None
