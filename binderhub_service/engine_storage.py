"""The build host's disk: the engine's build cache, local images, free space.

:class:`BuildHostStorage` belongs to the local executor. It prunes the
engine's build cache down to a size after builds, only while no build runs
(builds wait for a prune to end, and a prune waits for running builds); it
holds new builds back, or fails them, while the engine's disk is short of free
space; it removes the local copy of an image once the image is pushed; and,
without a registry, it keeps the service's local images within a budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from traitlets import Bool, Enum, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .engine_api import engine_call
from .errors import BuildFailed, ServiceError, UpstreamError
from .events import BuildEvent, Phase
from .failures import FailureClass
from .metrics import BUILD_CACHE_BYTES, BUILD_CACHE_PRUNED_BYTES, ENGINE_FREE_BYTES
from .spawner import image_name_regex

EmitFunc = Callable[[BuildEvent], None]
# What the service knows of its images: those never to remove (saved, building),
# and when each was last asked for or built (seconds since the epoch).
ImageUsage = Callable[[], Awaitable[tuple[set[str], dict[str, float]]]]


def human_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it at 1 or more, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def unshared_cache_bytes(df: object) -> int:
    """Bytes of the build cache records in an engine's ``/system/df`` answer that no
    image holds (those a prune can free)."""
    records = df.get("BuildCache") if isinstance(df, dict) else None
    return sum(
        int(r.get("Size") or 0)
        for r in records or []
        if isinstance(r, dict) and not r.get("Shared")
    )


class BuildHostStorage(LoggingConfigurable):
    """Keeps the disk of the engine local builds run on from filling up.

    Configured as ``c.BuildHostStorage``; every limit is off by default.
    """

    build_cache_max_bytes = Integer(
        0,
        min=0,
        help="""Bytes of build cache the engine keeps (records no image holds, as the
        engine's ``docker system df`` counts them). After a build, once no build is running,
        the cache is pruned down to this size, least recently used first (the engine's
        ``POST /build/prune?keep-storage=...``, what ``docker builder prune --keep-storage``
        does). Builds that start meanwhile wait for the prune to end. Default 0: never
        pruned. Example: ``20 * 1024**3`` for 20 GiB. The prune covers the engine's whole
        build cache: give the service an engine of its own.""",
    ).tag(config=True)

    min_free_bytes = Integer(
        0,
        min=0,
        help="""Free bytes the engine's disk (``data_root``) must have for a new build to
        start. Below it a build waits (``low_disk_action = "wait"``) or fails at once
        (``"fail"``), with the reason in its stream. Default 0: no check. Example:
        ``10 * 1024**3`` for 10 GiB.""",
    ).tag(config=True)

    low_disk_action = Enum(
        ["wait", "fail"],
        default_value="wait",
        help="""What a build does when the engine's disk has less than ``min_free_bytes``
        free: ``wait`` (a ``waiting`` event says why; it fails after ``low_disk_wait_seconds``)
        or ``fail`` at once. Default ``wait``.""",
    ).tag(config=True)

    low_disk_wait_seconds = Float(
        600.0,
        help="""Seconds a build waits for free space before it fails. Default 600.""",
    ).tag(config=True)

    free_space_check_seconds = Float(
        10.0,
        help="Seconds between checks of the free space while builds wait for it. Default 10.",
    ).tag(config=True)

    data_root = Unicode(
        "",
        help="""Directory on the engine's disk whose free space is checked, as this service
        sees it. Default: the engine's own data root (``docker info``'s ``DockerRootDir``,
        e.g. ``/var/lib/docker``), which fits when the service runs on the engine's host.""",
    ).tag(config=True)

    remove_pushed_images = Bool(
        False,
        help="""Remove a built image from the local engine once it is pushed to the registry
        (its tag only: an image a container uses stays). Default off. Its layers then stay
        only in the build cache, which ``build_cache_max_bytes`` keeps in bounds.""",
    ).tag(config=True)

    local_images_max_bytes = Integer(
        0,
        min=0,
        help="""Without a registry: bytes the engine may hold of this service's images (named
        ``<image_prefix>...``; each image's size counts its base layers too). After builds,
        once none is running, the least recently asked for or built are removed until the
        rest fit; images users saved, and images being built, stay. Default 0: no budget.
        Example: ``100 * 1024**3`` for 100 GiB.""",
    ).tag(config=True)

    engine_timeout = Float(
        120.0, help="Seconds a call of the engine's API (a prune included) may take."
    ).tag(config=True)

    # Set by the executor: the engine's Unix socket, and how to run its docker CLI.
    engine_socket: str = "/var/run/docker.sock"
    docker: Callable[..., Awaitable[tuple[int, str]]] | None = None
    # Set by the service without a registry, for local_images_max_bytes: its image
    # prefix, what it knows of its images, and what to call with each removed image.
    image_prefix: str = ""
    usage: ImageUsage | None = None
    forget: Callable[[str], None] | None = None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._active = 0
        self._pruning = False
        self._changed = asyncio.Condition()
        self._tidy_task: asyncio.Task[None] | None = None

    async def _engine(self, method: str, path: str) -> object:
        return await engine_call(self.engine_socket, method, path, self.engine_timeout)

    async def _data_root(self) -> str:
        if not self.data_root:
            info = await self._engine("GET", "/info")
            root = info.get("DockerRootDir") if isinstance(info, dict) else None
            if not root:
                raise UpstreamError("The container engine does not name its data root.")
            self.data_root = str(root)
        return self.data_root

    async def free_bytes(self) -> int:
        """Free bytes on the engine's disk (for unprivileged users), also as a metric."""
        root = await self._data_root()
        stat = os.statvfs(root)
        free = stat.f_bavail * stat.f_frsize
        ENGINE_FREE_BYTES.set(free)
        return free

    async def cache_bytes(self) -> int:
        """Bytes of build cache a prune could free, also as a metric."""
        size = unshared_cache_bytes(await self._engine("GET", "/system/df"))
        BUILD_CACHE_BYTES.set(size)
        return size

    async def check(self) -> None:
        """At start: with a free-space limit, the data root must be readable."""
        if not self.min_free_bytes:
            return
        try:
            await self.free_bytes()
        except OSError as e:
            raise ServiceError(
                f"Cannot read the free space of the engine's data root {self.data_root} "
                f"({e.strerror}): set c.BuildHostStorage.data_root to where this service "
                "sees the engine's disk, or c.BuildHostStorage.min_free_bytes = 0."
            ) from None

    async def wait_for_space(self, emit: EmitFunc) -> None:
        """Return once the engine's disk has ``min_free_bytes`` free; else BuildFailed."""
        if not self.min_free_bytes:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.low_disk_wait_seconds
        told = False
        while True:
            try:
                free = await self.free_bytes()
            except (OSError, UpstreamError) as e:
                self.log.error("Cannot measure the engine's free space: %s", e)
                raise BuildFailed(
                    "The build host cannot tell its free disk space; ask its operator."
                ) from None
            if free >= self.min_free_bytes:
                return
            shortage = (
                f"the build host has {human_bytes(free)} of disk space free, less than the "
                f"{human_bytes(self.min_free_bytes)} a build needs to start"
            )
            if self.low_disk_action == "fail" or loop.time() >= deadline:
                self.log.warning("Build refused: %s", shortage)
                raise BuildFailed(
                    f"Not built: {shortage}. Try again later.",
                    failure_class=FailureClass.DISK_FULL,
                )
            if not told:
                emit(BuildEvent(Phase.WAITING, f"Waiting for disk space: {shortage}.\n"))
                told = True
            await asyncio.sleep(self.free_space_check_seconds)

    @asynccontextmanager
    async def building(self) -> AsyncIterator[None]:
        """Hold the build cache for one build: no prune runs until it ends."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._pruning)
            self._active += 1
        try:
            yield
        finally:
            async with self._changed:
                self._active -= 1
                self._changed.notify_all()
            self._prune_soon()

    def _prune_soon(self) -> None:
        budget = self.local_images_max_bytes and self.usage is not None
        if self._active or not (self.build_cache_max_bytes or budget):
            return
        if self._tidy_task is None or self._tidy_task.done():
            self._tidy_task = asyncio.create_task(self._tidy())

    async def _tidy(self) -> None:
        if self.local_images_max_bytes and self.usage is not None:
            try:
                await self.trim_images()
            except UpstreamError as e:
                self.log.warning("Removing local images over the budget failed: %s", e)
        if self.build_cache_max_bytes:
            await self.prune()

    async def prune(self) -> int:
        """Prune the build cache to ``build_cache_max_bytes`` once no build runs; bytes freed."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._active and not self._pruning)
            self._pruning = True
        try:
            query = urllib.parse.urlencode({"keep-storage": self.build_cache_max_bytes})
            try:
                answer = await self._engine("POST", f"/build/prune?{query}")
                freed = int(answer.get("SpaceReclaimed") or 0) if isinstance(answer, dict) else 0
                BUILD_CACHE_PRUNED_BYTES.inc(freed)
                left = await self.cache_bytes()
            except UpstreamError as e:
                self.log.warning("Pruning the build cache failed: %s", e)
                return 0
            self.log.info(
                "Pruned the build cache: %s freed, %s left", human_bytes(freed), human_bytes(left)
            )
            return freed
        finally:
            async with self._changed:
                self._pruning = False
                self._changed.notify_all()

    async def idle(self) -> None:
        """Wait for the tidying started after the last build, if any, to end."""
        if self._tidy_task is not None:
            await asyncio.shield(self._tidy_task)

    async def trim_images(self) -> list[str]:
        """Remove this service's least recently used local images over the budget.

        Only tags matching the service's image names are touched, and only
        without force (an image a container uses stays); returns the tags removed.
        """
        if self.usage is None or self.docker is None or not self.image_prefix:
            return []
        ours = re.compile(image_name_regex(self.image_prefix))
        query = urllib.parse.urlencode(
            {"filters": json.dumps({"reference": [self.image_prefix + "*"]})}
        )
        listed = await self._engine("GET", f"/images/json?{query}")
        keep, last_used = await self.usage()
        images = []
        for image in listed if isinstance(listed, list) else []:
            tags = [t for t in image.get("RepoTags") or [] if ours.match(t)]
            if tags:
                created = float(image.get("Created") or 0)
                used = max([last_used.get(t, 0.0) for t in tags] + [created])
                images.append((used, tags, int(image.get("Size") or 0)))
        total = sum(size for _, _, size in images)
        removed: list[str] = []
        for _, tags, size in sorted(images):
            if total <= self.local_images_max_bytes:
                break
            if any(t in keep for t in tags):
                continue
            for tag in tags:
                code, out = await self.docker("image", "rm", "--", tag)
                if code != 0:
                    self.log.warning("Could not remove %s: %s", tag, out)
                    break
                removed.append(tag)
                if self.forget is not None:
                    self.forget(tag)
            else:
                total -= size
        if removed:
            self.log.info("Removed local images over the budget: %s", ", ".join(removed))
        return removed

    async def pushed(self, image_name: str) -> None:
        """An image was pushed: remove its local tag, when so configured."""
        if not self.remove_pushed_images or self.docker is None:
            return
        code, out = await self.docker("image", "rm", "--", image_name)
        if code != 0:
            self.log.warning("Could not remove the local copy of %s: %s", image_name, out)
