"""Per-user limits: a request rate (token bucket) and concurrent builds.

Limits count by :attr:`binderhub_service.auth.Identity.limit_key`: the hub user
or service, or the client address when authentication is off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from .errors import TooManyRequests


class RateLimited(TooManyRequests):
    """Too many requests; ``retry_after`` says in how many seconds to try again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key: ``capacity`` tokens, refilled at ``rate`` per second."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._pruned = clock()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0 when granted, else the seconds until one is free."""
        now = self.clock()
        self._prune(now)
        bucket = self._buckets.setdefault(key, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget full buckets (idle keys) once per refill period, so memory stays bounded."""
        if now - self._pruned < self.capacity / self.rate:
            return
        self._pruned = now
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.capacity:
                del self._buckets[key]


class UserLimits(LoggingConfigurable):
    """Per-user request rate and concurrent-build limits."""

    rate_limit_per_minute = Float(
        60.0,
        help="""Requests each user (or client address without authentication) may make per
        minute, averaged by a token bucket that allows bursts of ``rate_limit_burst``.
        Refused requests get status 429 and when to retry. Default 60; 0 disables the limit.""",
    ).tag(config=True)

    rate_limit_burst = Int(
        help="""Requests a user may make at once before the rate applies.
        Default: ``rate_limit_per_minute`` (rounded up), e.g. 60.""",
    ).tag(config=True)

    max_concurrent_builds_per_user = Int(
        3,
        help="""Builds one user may have queued or running at once; a request that would
        start another is refused with status 429 (joining a build that is already running
        is always allowed). Default 3; 0 disables the limit.""",
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._buckets: TokenBuckets | None = None
        if self.rate_limit_per_minute > 0:
            capacity = self.rate_limit_burst or math.ceil(self.rate_limit_per_minute)
            self._buckets = TokenBuckets(self.rate_limit_per_minute / 60, max(1, capacity))

    def check_rate(self, key: str) -> None:
        """Count a request by ``key``; raise :class:`RateLimited` beyond the rate."""
        if self._buckets is None:
            return
        wait = self._buckets.take(key)
        if wait > 0:
            retry_after = math.ceil(wait)
            self.log.info("Rate limit reached by %s", key)
            raise RateLimited(
                f"Too many requests: the limit is {self.rate_limit_per_minute:g} per minute. "
                f"Try again in {retry_after} second{'s' if retry_after != 1 else ''}.",
                retry_after,
            )

    def check_new_build(self, key: str, running: int) -> None:
        """Allow one more build for ``key``, who has ``running`` builds queued or running."""
        limit = self.max_concurrent_builds_per_user
        if limit and running >= limit:
            self.log.info("Concurrent build limit reached by %s", key)
            raise TooManyRequests(
                f"You already have {running} builds queued or running, the most allowed. "
                "Try again when one of them has finished."
            )
