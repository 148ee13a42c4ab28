"""Health checks of what builds depend on, run concurrently and cached briefly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from .errors import ServiceError

Check = Callable[[], Awaitable[dict[str, Any]]]


class HealthChecker(LoggingConfigurable):
    """Runs every named check at once; remembers the answer for a few seconds."""

    cache_seconds = Float(
        10.0, help="Seconds a health answer is reused, so probes cannot overload backends."
    ).tag(config=True)

    check_timeout = Float(10.0, help="Seconds each check may take before it counts as failed.").tag(
        config=True
    )

    def __init__(self, checks: Mapping[str, Check], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def _run(self, name: str, check: Check) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.check_timeout):
                details = await check()
        except TimeoutError:
            return {"service": name, "ok": False, "message": "no answer in time"}
        except ServiceError as e:
            return {"service": name, "ok": False, "message": e.message}
        except Exception:
            self.log.exception("Health check %s failed", name)
            return {"service": name, "ok": False, "message": "check failed"}
        return {"service": name, "ok": True, **details}

    async def status(self) -> dict[str, Any]:
        """``{"ok": bool, "checks": [...]}``, from the cache when it is fresh."""
        async with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            results = await asyncio.gather(*(self._run(n, c) for n, c in self.checks.items()))
            status = {"ok": all(r["ok"] for r in results), "checks": list(results)}
            self._cached = (time.monotonic(), status)
            return status
