import pytest

from binderhub_service.handlers.accept import accepted_media_ranges, accepts_event_stream


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("text/event-stream", True),
        ("TEXT/Event-Stream", True),
        ("application/json, text/event-stream;q=0.5", True),
        ("text/html,text/event-stream ; charset=utf-8", True),
        ("text/event-stream;q=0", False),
        ("text/event-stream;q=0.0, */*", False),
        ("*/*", False),
        ("application/json", False),
        ("", False),
        (None, False),
        ("garbage;;;,", False),
    ],
)
def test_accepts_event_stream(header, accepted):
    assert accepts_event_stream(header) is accepted


def test_quality_values_and_bad_parameters():
    assert accepted_media_ranges("a/b;q=0.3, c/d;q=oops, e/f") == {
        "a/b": 0.3,
        "c/d": 1.0,
        "e/f": 1.0,
    }
