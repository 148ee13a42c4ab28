"""The garbage collection policy: one test per rule, on plain facts."""

from __future__ import annotations

from binderhub_service.gc_policy import DAY, ImageFacts, Policy, decide

NOW = 1_000 * DAY


def image(name: str, repository: str = "r", **kwargs: object) -> ImageFacts:
    values: dict[str, object] = {"created": NOW - 100 * DAY, "size": 10}
    values.update(kwargs)
    return ImageFacts(name=name, repository=repository, **values)  # type: ignore[arg-type]


def verdicts(images: list[ImageFacts], policy: Policy) -> dict[str, tuple[bool, str]]:
    return {d.image.name: (d.delete, d.reason) for d in decide(images, policy, NOW)}


NO_KEEP = Policy(unused_for_days=30, min_age_days=0, keep_last_per_repository=0)


def test_unused_images_are_deleted() -> None:
    result = verdicts([image("old", last_used=NOW - 31 * DAY)], NO_KEEP)
    assert result == {"old": (True, "unused for 31.0 days")}


def test_saved_images_are_kept() -> None:
    assert verdicts([image("s", saved=True)], NO_KEEP) == {"s": (False, "saved by a user")}


def test_images_building_are_kept() -> None:
    result = verdicts([image("b", building=True)], NO_KEEP)
    assert result == {"b": (False, "a build of it is running")}


def test_images_of_running_servers_are_kept() -> None:
    result = verdicts([image("u", running=True, last_used=NOW - 99 * DAY)], NO_KEEP)
    assert result == {"u": (False, "a running server uses it")}


def test_images_of_running_servers_are_not_evicted_for_size() -> None:
    policy = Policy(
        unused_for_days=30, min_age_days=0, keep_last_per_repository=0, max_total_bytes=5
    )
    result = verdicts([image("u", running=True, last_used=NOW - DAY)], policy)
    assert result == {"u": (False, "a running server uses it")}


def test_images_of_unknown_age_are_kept() -> None:
    result = verdicts(
        [image("x", created=0.0), image("r", created=0.0, last_used=NOW - 99 * DAY)], NO_KEEP
    )
    assert result == {"x": (False, "age unknown"), "r": (True, "unused for 99.0 days")}


def test_young_images_are_kept() -> None:
    policy = Policy(unused_for_days=0, min_age_days=2, keep_last_per_repository=0)
    result = verdicts([image("y", created=NOW - DAY), image("o", created=NOW - 3 * DAY)], policy)
    assert result == {"y": (False, "younger than 2 days"), "o": (True, "unused for 3.0 days")}


def test_recently_used_images_are_kept() -> None:
    result = verdicts([image("u", last_used=NOW - 29 * DAY)], NO_KEEP)
    assert result == {"u": (False, "used within 30 days")}


def test_the_last_images_of_a_repository_are_kept() -> None:
    policy = Policy(unused_for_days=30, min_age_days=0, keep_last_per_repository=1)
    images = [
        image("a1", "a", created=NOW - 90 * DAY),
        image("a2", "a", created=NOW - 80 * DAY),
        image("b1", "b", created=NOW - 95 * DAY),
    ]
    result = verdicts(images, policy)
    assert result["a1"][0] is True
    assert result["a2"] == (False, "among the last 1 of its repository")
    assert result["b1"] == (False, "among the last 1 of its repository")


def test_over_the_budget_the_least_recently_used_go_first() -> None:
    policy = Policy(
        unused_for_days=365, min_age_days=0, keep_last_per_repository=0, max_total_bytes=25
    )
    images = [
        image("newest", last_used=NOW - 1 * DAY),
        image("oldest", last_used=NOW - 3 * DAY),
        image("middle", last_used=NOW - 2 * DAY),
        image("saved", saved=True, last_used=NOW - 9 * DAY),
    ]
    result = verdicts(images, policy)
    assert result["oldest"] == (True, "over the size budget of 25 bytes")
    assert result["middle"] == (True, "over the size budget of 25 bytes")
    assert result["newest"][0] is False
    assert result["saved"] == (False, "saved by a user")


def test_no_budget_deletes_nothing_by_size() -> None:
    policy = Policy(unused_for_days=365, min_age_days=0, keep_last_per_repository=0)
    assert not any(d.delete for d in decide([image("a", size=10**12)], policy, NOW))
