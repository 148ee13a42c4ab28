"""Which registry images garbage collection keeps, and why: a pure function, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class ImageFacts:
    """What is known of one image: ``name`` is ``host/repository:tag``.

    ``created`` is when it was built and ``last_used`` when a build of it was
    last asked for or ended (seconds since the epoch; 0 when unknown);
    ``size`` is in bytes; ``running`` says a server the hub runs uses it.
    """

    name: str
    repository: str
    size: int = 0
    created: float = 0.0
    last_used: float = 0.0
    saved: bool = False
    building: bool = False
    running: bool = False


@dataclass(frozen=True)
class Policy:
    """The limits of :class:`~binderhub_service.gc.GarbageCollector`, as plain values."""

    unused_for_days: float = 30.0
    min_age_days: float = 1.0
    keep_last_per_repository: int = 1
    max_total_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    """Keep or delete one image, with the reason in words."""

    image: ImageFacts
    delete: bool
    reason: str


def _used(image: ImageFacts) -> float:
    return max(image.last_used, image.created)


def _latest_per_repository(images: Iterable[ImageFacts], n: int) -> set[str]:
    by_repository: dict[str, list[ImageFacts]] = {}
    for image in images:
        by_repository.setdefault(image.repository, []).append(image)
    latest: set[str] = set()
    for group in by_repository.values():
        group.sort(key=lambda i: (i.created, i.name), reverse=True)
        latest.update(i.name for i in group[:n])
    return latest


def decide(images: Sequence[ImageFacts], policy: Policy, now: float) -> list[Decision]:
    """Keep or delete each image, in the order given.

    Protected first: saved by a user, a build of it unfinished, used by a
    running server, of unknown age
    (no creation time and no build record), younger than ``min_age_days``.
    Then kept: used within ``unused_for_days`` or among the newest
    ``keep_last_per_repository`` of its repository; the rest is deleted.
    When ``max_total_bytes`` is above 0 and what is kept is larger, the least
    recently used images not protected are deleted until it fits.
    """
    latest = _latest_per_repository(images, policy.keep_last_per_repository)
    decisions: dict[str, Decision] = {}
    evictable: list[ImageFacts] = []
    for image in images:
        age_days = (now - image.created) / DAY
        idle_days = (now - _used(image)) / DAY
        if image.saved:
            decision = Decision(image, False, "saved by a user")
        elif image.building:
            decision = Decision(image, False, "a build of it is running")
        elif image.running:
            decision = Decision(image, False, "a running server uses it")
        elif not image.created and not image.last_used:
            decision = Decision(image, False, "age unknown")
        elif image.created and age_days < policy.min_age_days:
            decision = Decision(image, False, f"younger than {policy.min_age_days:g} days")
        elif idle_days < policy.unused_for_days:
            decision = Decision(image, False, f"used within {policy.unused_for_days:g} days")
            evictable.append(image)
        elif image.name in latest:
            decision = Decision(
                image, False, f"among the last {policy.keep_last_per_repository} of its repository"
            )
            evictable.append(image)
        else:
            decision = Decision(image, True, f"unused for {idle_days:.1f} days")
        decisions[image.name] = decision
    if policy.max_total_bytes > 0:
        total = sum(d.image.size for d in decisions.values() if not d.delete)
        for image in sorted(evictable, key=lambda i: (_used(i), i.name)):
            if total <= policy.max_total_bytes:
                break
            total -= image.size
            decisions[image.name] = Decision(
                image, True, f"over the size budget of {policy.max_total_bytes} bytes"
            )
    return [decisions[i.name] for i in images]
