"""Registry garbage collection by use: find this service's images, decide, delete.

The decisions are :func:`~binderhub_service.gc_policy.decide`'s; this module
gathers the facts (registry, build records, saved images) and deletes by
manifest digest. ``binderhub-service gc --config FILE`` runs it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from traitlets import Bool, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import ServiceError, UpstreamError
from .gc_policy import Decision, ImageFacts, Policy, decide
from .hub_servers import HubUnavailable, running_images
from .metrics import GC_BYTES_DELETED, GC_IMAGES_DELETED, GC_LAST_RUN, GcOutcome
from .registry import DockerRegistry
from .spawner import image_name_regex
from .store import Store

# A digest no manifest has: deleting it shows whether the registry deletes at all.
PROBE_DIGEST = "sha256:" + "0" * 64


class GcError(ServiceError):
    """Garbage collection cannot run; the message says why and what to do."""

    status_code = 502


@dataclass
class GcReport:
    """What a run decided, and what it deleted."""

    decisions: list[Decision] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        def entry(d: Decision) -> dict[str, str]:
            return {"image": d.image.name, "reason": d.reason}

        return {
            "delete": [entry(d) for d in self.decisions if d.delete],
            "keep": [entry(d) for d in self.decisions if not d.delete],
        }


def _parse_time(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def manifest_size(document: dict[str, Any]) -> int:
    """Bytes an image's manifest refers to: config and layers (or an index's manifests)."""
    parts = [document.get("config") or {}, *(document.get("layers") or [])]
    parts += document.get("manifests") or []
    return sum(int(p.get("size", 0)) for p in parts if isinstance(p, dict))


class GarbageCollector(LoggingConfigurable):
    """Deletes images under the service's ``image_prefix`` that nobody uses.

    An image is kept when a user saved it, a build of it is unfinished, a
    server the hub runs uses it, it is younger than ``min_age_days``, it was
    built or asked for within ``unused_for_days``, or it is among the newest
    ``keep_last_per_repository`` of its repository; while the kept images
    exceed ``max_total_bytes`` the least recently used of them (not saved, not
    building, not running, not young) go too.
    """

    unused_for_days = Float(
        30.0,
        help="""Days since an image was last built or asked for after which it may be
        deleted. Default 30. 0 makes every image not otherwise kept a candidate.""",
    ).tag(config=True)

    min_age_days = Float(
        1.0,
        help="""Days an image is kept after it was built, whatever else holds (it may
        not have been asked for yet). Default 1. Example: ``0.25`` for six hours.""",
    ).tag(config=True)

    keep_last_per_repository = Integer(
        1,
        min=0,
        help="""How many of the newest images of each repository are kept even when
        unused. Default 1; 0 keeps none by this rule.""",
    ).tag(config=True)

    max_total_bytes = Integer(
        0,
        min=0,
        help="""Size budget of the kept images, in bytes (from their manifests: layers
        and config, shared layers counted in each image). Over it, the least recently
        used images not otherwise protected are deleted. Default 0: no budget.
        Example: ``500 * 1024**3`` for 500 GiB.""",
    ).tag(config=True)

    check_running_servers = Bool(
        True,
        help="""Ask JupyterHub which images its running servers were started with, and keep
        them. Default on. The hub is asked at ``hub_api_url`` with ``hub_api_token``, which
        needs the scopes ``list:users`` and ``read:servers``; when it cannot be asked, the run
        stops with an error and deletes nothing. Set False only when no hub starts servers
        from this service's images.""",
    ).tag(config=True)

    hub_api_url = Unicode(
        help="""The hub's REST API, e.g. ``http://hub:8081/hub/api``. Default:
        ``$JUPYTERHUB_API_URL`` (set by JupyterHub for its services).""",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    hub_api_token = Unicode(
        help="""Hub token the collector lists running servers with (scopes ``list:users`` and
        ``read:servers``). Default: ``$JUPYTERHUB_API_TOKEN`` (the service's own token).""",
    ).tag(config=True)

    @default("hub_api_token")
    def _default_hub_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    interval_hours = Float(
        0.0,
        min=0.0,
        help="""Hours between runs the service starts by itself (the first one this long
        after it starts). Default 0: no scheduled runs (run ``binderhub-service gc`` or
        ``POST api/v1/gc`` instead). Example: 24 for a daily run. Scheduled runs are dry
        runs unless ``scheduled_dry_run`` is False.""",
    ).tag(config=True)

    scheduled_dry_run = Bool(
        True,
        help="""Whether scheduled runs (``interval_hours``) only decide and log what they
        would delete. Default True: read the service log, then set False to delete.""",
    ).tag(config=True)

    hub_timeout = Float(30.0, help="Seconds each request to the hub may take. Default 30.").tag(
        config=True
    )

    async def running_images(self, image_prefix: str) -> set[str]:
        """Images under ``image_prefix`` the hub's running servers use (GcError if unknown)."""
        if not self.check_running_servers:
            return set()
        if not self.hub_api_url or not self.hub_api_token:
            raise GcError(
                "Garbage collection keeps the images of running servers but does not know "
                "the hub: set c.GarbageCollector.hub_api_url and hub_api_token (or run it "
                "as a hub service), or set c.GarbageCollector.check_running_servers = False; "
                "nothing was deleted."
            )
        ours = re.compile(image_name_regex(image_prefix))
        try:
            return await running_images(
                self.hub_api_url, self.hub_api_token, ours, self.hub_timeout
            )
        except HubUnavailable as e:
            raise GcError(
                f"Cannot ask the hub at {self.hub_api_url} which images running servers use: "
                f"{e}; nothing was deleted."
            ) from None

    def policy(self) -> Policy:
        return Policy(
            unused_for_days=self.unused_for_days,
            min_age_days=self.min_age_days,
            keep_last_per_repository=self.keep_last_per_repository,
            max_total_bytes=self.max_total_bytes,
        )

    async def _facts(
        self, registry: DockerRegistry, store: Store, image_prefix: str
    ) -> tuple[list[ImageFacts], dict[str, str]]:
        host, _, repository_prefix = image_prefix.partition("/")
        ours = re.compile(image_name_regex(image_prefix))
        usage = await store.image_usage(image_prefix)
        saved = {image.image for image in await store.list_images()}
        running = await self.running_images(image_prefix)
        facts: list[ImageFacts] = []
        digests: dict[str, str] = {}
        for repository in await registry.repositories(repository_prefix):
            for tag in await registry.tags(repository):
                name = f"{host}/{repository}:{tag}"
                if not ours.match(name):
                    continue
                found = await registry.manifest(repository, tag)
                if found is None:
                    continue
                digest, document = found
                config_digest = (document.get("config") or {}).get("digest")
                config = (
                    await registry.blob_json(repository, config_digest) if config_digest else {}
                )
                last_used, building = usage.get(name, (0.0, False))
                digests[name] = digest
                facts.append(
                    ImageFacts(
                        name=name,
                        repository=repository,
                        size=manifest_size(document),
                        created=_parse_time(config.get("created")),
                        last_used=last_used,
                        saved=name in saved,
                        building=building,
                        running=name in running,
                    )
                )
        return facts, digests

    async def _check_deletes(self, registry: DockerRegistry, repository: str) -> None:
        code = await registry.delete_manifest(repository, PROBE_DIGEST)
        if code in (405, 501):
            raise GcError(
                f"The registry at {registry.url} does not delete images (it answered {code}). "
                "Enable deletes (distribution: storage.delete.enabled: true) or let the "
                "registry's own retention rules remove images; nothing was deleted."
            )
        if code in (401, 403):
            raise GcError(
                f"The registry at {registry.url} refused to delete with the configured "
                f"credentials (it answered {code}); nothing was deleted."
            )

    async def collect(
        self,
        registry: DockerRegistry,
        store: Store,
        image_prefix: str,
        dry_run: bool = False,
        forget: Callable[[str], None] | None = None,
        before_delete: Callable[[], Awaitable[object]] | None = None,
    ) -> GcReport:
        """Decide for every image under ``image_prefix``; unless ``dry_run``, delete.

        Before anything is deleted the registry is asked (with a digest no image
        has) whether it deletes at all, so a refusal changes nothing. ``forget``
        is called with each deleted image's name (e.g. to drop it from a cache).
        ``before_delete`` is awaited just before the records and the hub are read
        again (e.g. to flush the records), so that an image asked for, built or
        started since the decisions is kept.
        """
        try:
            report = await self._collect(
                registry, store, image_prefix, dry_run, forget, before_delete
            )
        except (GcError, UpstreamError):
            GC_LAST_RUN.labels(outcome=GcOutcome.FAILURE.value).set(time.time())
            raise
        GC_LAST_RUN.labels(outcome=GcOutcome.SUCCESS.value).set(time.time())
        return report

    async def _collect(
        self,
        registry: DockerRegistry,
        store: Store,
        image_prefix: str,
        dry_run: bool,
        forget: Callable[[str], None] | None,
        before_delete: Callable[[], Awaitable[object]] | None,
    ) -> GcReport:
        if "/" not in image_prefix:
            raise GcError(
                f"image_prefix {image_prefix!r} names no registry host: garbage collection "
                "needs a registry (c.DockerRegistry.url)."
            )
        facts, digests = await self._facts(registry, store, image_prefix)
        decisions = decide(facts, self.policy(), time.time())
        kept_digests = {digests[d.image.name] for d in decisions if not d.delete}
        decisions = [
            Decision(d.image, False, "same manifest as a kept image")
            if d.delete and digests[d.image.name] in kept_digests
            else d
            for d in decisions
        ]
        report = GcReport(decisions=decisions)
        doomed = [d.image for d in decisions if d.delete]
        if dry_run or not doomed:
            return report
        await self._check_deletes(registry, doomed[0].repository)
        # A request, a build or a server may have come since the facts were gathered:
        # keep its image.
        if before_delete is not None:
            await before_delete()
        usage = await store.image_usage(image_prefix)
        running = await self.running_images(image_prefix)
        late: dict[str, str] = {}
        for image in doomed:
            last_used, building = usage.get(image.name, (0.0, False))
            if building:
                late[image.name] = "a build of it started during the run"
            elif last_used > image.last_used:
                late[image.name] = "asked for during the run"
            elif image.name in running:
                late[image.name] = "a server using it started during the run"
        report.decisions = [
            Decision(d.image, False, late[d.image.name]) if d.image.name in late else d
            for d in report.decisions
        ]
        spared = {digests[name] for name in late}
        done: set[str] = set()
        for image in doomed:
            if image.name in late or digests[image.name] in spared:
                self.log.info("Keeping %s: %s", image.name, late.get(image.name, "same manifest"))
                continue
            digest = digests[image.name]
            if digest not in done:
                code = await registry.delete_manifest(image.repository, digest)
                if code not in (200, 202, 404):
                    raise GcError(
                        f"The registry answered {code} deleting {image.name}; "
                        f"{len(report.deleted)} image(s) were deleted before it."
                    )
                done.add(digest)
            report.deleted.append(image.name)
            report.deleted_bytes += image.size
            GC_IMAGES_DELETED.inc()
            GC_BYTES_DELETED.inc(image.size)
            if forget is not None:
                forget(image.name)
            self.log.info("Deleted %s", image.name)
        return report


class GcRunner:
    """Runs the collector inside the service, one run at a time.

    It waits for buffered build records to be written first, so builds that just
    started count; every
    deleted image is dropped from the found-image cache (``forget``).
    """

    def __init__(
        self,
        collector: GarbageCollector,
        registry: DockerRegistry,
        store: Store,
        image_prefix: str,
        forget: Callable[[str], None],
        flush: Callable[[], Awaitable[object]],
    ) -> None:
        self.collector = collector
        self.registry = registry
        self.store = store
        self.image_prefix = image_prefix
        self.forget = forget
        self.flush = flush
        self._lock = asyncio.Lock()

    async def run_every(self, interval: float, dry_run: bool) -> None:
        """Run every ``interval`` seconds until cancelled; a failed run is logged, not fatal."""
        log = self.collector.log
        while True:
            await asyncio.sleep(interval)
            try:
                report = await self.run(dry_run)
            except (ServiceError, UpstreamError) as e:
                log.error("Scheduled garbage collection failed: %s", e)
                continue
            doomed = [d.image.name for d in report.decisions if d.delete]
            if dry_run:
                log.info(
                    "Scheduled garbage collection (dry run) would delete %d image(s): %s",
                    len(doomed),
                    ", ".join(doomed) or "none",
                )
            else:
                log.info(
                    "Scheduled garbage collection deleted %d image(s), %d bytes",
                    len(report.deleted),
                    report.deleted_bytes,
                )

    async def run(self, dry_run: bool) -> GcReport:
        if self._lock.locked():
            raise ServiceError("A garbage collection is running; try again when it ends.", 409)
        async with self._lock:
            await self.flush()
            return await self.collector.collect(
                self.registry,
                self.store,
                self.image_prefix,
                dry_run,
                forget=self.forget,
                before_delete=self.flush,
            )
