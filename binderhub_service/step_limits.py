"""Memory and CPU limits on a build's steps, set where the engine's BuildKit runs them.

repo2docker builds with ``docker buildx build`` on the engine's own BuildKit (the
``docker`` driver). That BuildKit runs every ``RUN`` step of the build in a cgroup
of its own, created below ``<engine cgroup parent>/buildkit/`` (``docker/buildkit``
by default) in each controller's hierarchy. Docker Engine 20.10's BuildKit takes
no memory or CPU option for a build and ignores a build's ``--cgroup-parent``, so
the limits cannot be passed with the build. :class:`StepLimiter` therefore
watches that folder (inotify) and writes the limits into each step's cgroup the
moment it appears, before the step's command starts. A step that goes over the
memory limit is killed by the kernel, and BuildKit reports ``exit code: 137``,
which :func:`oom_killed` recognises in the build log.

This needs cgroup v1 with the engine's ``cgroupfs`` driver and write access to
the engine's cgroup hierarchy (root on the engine's host, or a privileged
container beside a build daemon): :func:`unsupported_reason` says why a setup
cannot. ``python -m binderhub_service.step_limits`` runs the limiter on its own,
beside a build daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BuildFailed
from .failures import FailureClass

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_STEP_PARENT = "docker/buildkit"
CFS_PERIOD_US = 100_000

# BuildKit's error line for a step whose command was killed with SIGKILL (128 + 9),
# as Docker 20.10 ("#5 ERROR: executor failed running [...]: exit code: 137") and
# later engines ("ERROR: process ... did not complete successfully: exit code: 137")
# word it. A step's own output has a timestamp after "#5 ", so it cannot pass for
# one, and the code that counts ends the line (the step's command precedes it).
_KILLED_STEP = re.compile(r"^(?:#\d+ )?ERROR: .*exit code: 137\s*$", re.MULTILINE)

_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_EVENT = struct.Struct("iIII")

_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(size: int) -> str:
    """``size`` in the largest binary unit that keeps it readable: ``96 MiB``, ``1.5 GiB``."""
    for unit, factor in _UNITS:
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class StepLimits:
    """The limits every build step gets: bytes of memory, CPUs (``None``: no limit)."""

    memory: int | None = None
    cpu: float | None = None

    @classmethod
    def from_config(cls, memory: int | None, cpu: float) -> StepLimits:
        """From the executor's traits, where 0 (or ``None``) means no limit."""
        return cls(memory or None, cpu or None)

    @property
    def active(self) -> bool:
        return self.memory is not None or self.cpu is not None

    def describe(self) -> str:
        """``memory 96 MiB, 0.5 CPU``, or ``none``."""
        parts = []
        if self.memory is not None:
            parts.append(f"memory {format_bytes(self.memory)}")
        if self.cpu is not None:
            parts.append(f"{self.cpu:g} CPU")
        return ", ".join(parts) or "none"

    def writes(self, has_memsw: bool) -> list[tuple[str, str, str]]:
        """``(controller, file, value)`` to write into a step's cgroup, in order."""
        writes = []
        if self.memory is not None:
            writes.append(("memory", "memory.limit_in_bytes", str(self.memory)))
            if has_memsw:
                # Memory plus swap: without it a step could swap instead of being stopped.
                writes.append(("memory", "memory.memsw.limit_in_bytes", str(self.memory)))
        if self.cpu is not None:
            quota = max(1000, round(self.cpu * CFS_PERIOD_US))
            writes.append(("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)))
            writes.append(("cpu", "cpu.cfs_quota_us", str(quota)))
        return writes

    def controllers(self) -> list[str]:
        return sorted({controller for controller, _, _ in self.writes(False)})


class BuildOutOfMemory(BuildFailed):
    """A build step was killed for using too much memory; ``limit`` is the step limit, if any."""

    failure_class = FailureClass.OUT_OF_MEMORY

    def __init__(self, limit: int | None) -> None:
        super().__init__(oom_message(limit))
        self.limit = limit


def oom_message(limit: int | None) -> str:
    """What a user is told when a build step ran out of memory."""
    if limit is None:
        return (
            "The build ran out of memory: a build step was killed (exit code 137). "
            "Make the build use less memory, or ask the operator."
        )
    return (
        f"The build ran out of memory: a build step went over the memory limit of "
        f"{format_bytes(limit)} per build step and was stopped (exit code 137). "
        "Make the build use less memory (install fewer packages at once, load less data), "
        "or ask the operator for a higher limit."
    )


def oom_killed(message: str) -> bool:
    """Whether a line of the build log reports a step killed with SIGKILL (out of memory)."""
    return _KILLED_STEP.search(message) is not None


def step_dirs(cgroup_root: str, parent: str, limits: StepLimits) -> dict[str, str]:
    """The folder of each limited controller below which BuildKit creates step cgroups."""
    return {
        controller: os.path.join(cgroup_root, controller, parent.strip("/"))
        for controller in limits.controllers()
    }


def unsupported_reason(cgroup_root: str, parent: str, limits: StepLimits) -> str | None:
    """Why limits cannot be enforced with this cgroup hierarchy, or ``None`` when they can.

    Creates the step folders (BuildKit would on its first step) to prove write access.
    """
    if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        return f"{cgroup_root} is a cgroup v2 hierarchy; build step limits need cgroup v1"
    for controller, folder in step_dirs(cgroup_root, parent, limits).items():
        hierarchy = os.path.join(cgroup_root, controller)
        if not os.path.isdir(hierarchy):
            return f"there is no cgroup v1 {controller} hierarchy at {hierarchy}"
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            return f"cannot create {folder}: {e.strerror}"
        if not os.access(folder, os.W_OK):
            return f"cannot write to {folder}"
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


class StepLimiter:
    """Writes :class:`StepLimits` into every build step's cgroup as BuildKit creates it.

    :meth:`start` watches each limited controller's step folder (see
    :func:`step_dirs`) and limits the steps already there; :meth:`stop` ends the
    watch. A step whose memory limit cannot be set (it already uses more) is
    killed rather than left unlimited. ``limited`` counts the step cgroups limited.
    """

    def __init__(
        self,
        limits: StepLimits,
        cgroup_root: str = DEFAULT_CGROUP_ROOT,
        parent: str = DEFAULT_STEP_PARENT,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.limits = limits
        self.dirs = step_dirs(cgroup_root, parent, limits)
        self.log = log or logging.getLogger(__name__)
        self.limited = 0
        self._fd: int | None = None
        self._watches: dict[int, str] = {}
        self._libc = _libc()
        memsw = os.path.join(cgroup_root, "memory", "memory.memsw.limit_in_bytes")
        self._writes = limits.writes(has_memsw=os.path.exists(memsw))

    def start(self) -> None:
        """Watch the step folders (created if missing) and limit the steps already there."""
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self._fd = fd
        try:
            for folder in self.dirs.values():
                self._watch(folder)
        except BaseException:
            self.stop()
            raise
        asyncio.get_running_loop().add_reader(fd, self._read_events)
        self._limit_all()

    def _limit_all(self) -> None:
        """Limit every step cgroup there is (at start, and when events were lost)."""
        for controller, folder in self.dirs.items():
            for entry in os.scandir(folder):
                if entry.is_dir(follow_symlinks=False):
                    self._limit(controller, entry.name)

    def stop(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        self._watches.clear()

    def _watch(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        assert self._fd is not None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _IN_CREATE | _IN_ONLYDIR)
        if wd < 0:
            raise _os_error(f"inotify_add_watch {folder}")
        self._watches[wd] = folder

    def _read_events(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self.log.warning("Build step cgroup events were lost; limiting every step again")
                self._limit_all()
                continue
            folder = self._watches.get(wd)
            if folder is None:
                continue
            controller = next(c for c, f in self.dirs.items() if f == folder)
            if mask & _IN_IGNORED:
                # The folder was removed: watch the one BuildKit will create again.
                del self._watches[wd]
                self.log.warning("Build step cgroup folder %s was removed; watching anew", folder)
                self._watch(folder)
            elif mask & _IN_CREATE:
                self._limit(controller, os.fsdecode(name))

    def _limit(self, controller: str, step: str) -> None:
        """Write the limits of ``controller`` into the step cgroup ``step``."""
        path = os.path.join(self.dirs[controller], step)
        for ctl, filename, value in self._writes:
            if ctl != controller:
                continue
            try:
                with open(os.path.join(path, filename), "w") as f:
                    f.write(value)
            except FileNotFoundError:
                return  # the step has ended already
            except OSError as e:
                self.log.warning(
                    "Cannot set %s of build step %s (%s): stopping it", filename, step, e
                )
                self._kill(path)
                return
        self.limited += 1

    def _kill(self, path: str) -> None:
        try:
            with open(os.path.join(path, "tasks")) as f:
                pids = [int(pid) for pid in f.read().split()]
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def process_root(name: str, proc: str = "/proc") -> str:
    """``/proc/PID/root`` of the process called ``name`` (another container's file system)."""
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "comm")) as f:
                if f.read().strip() == name:
                    return os.path.join(entry.path, "root")
        except OSError:
            continue
    raise LookupError(f"no process named {name}")


def parse_memory(text: str) -> int:
    """Bytes from ``"512M"``, ``"2G"``, ``"1.5G"`` or a plain number of bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    text = text.strip().upper().removesuffix("I").removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r}") from None


def _wait_for_process(name: str) -> str:
    """:func:`process_root` of ``name``, waiting for the process to start (beside it)."""
    while True:
        try:
            return process_root(name)
        except LookupError:
            logging.info("Waiting for the process %s to start", name)
            time.sleep(2)


async def _serve(limiter: StepLimiter) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    limiter.start()
    limiter.log.info(
        "Limiting build steps below %s: %s",
        ", ".join(limiter.dirs.values()),
        limiter.limits.describe(),
    )
    try:
        await stop.wait()
    finally:
        limiter.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a :class:`StepLimiter` until SIGTERM, e.g. beside a build daemon."""
    parser = argparse.ArgumentParser(
        prog="python -m binderhub_service.step_limits",
        description="Limit the memory and CPU of every step BuildKit runs on this engine.",
    )
    parser.add_argument("--memory", type=parse_memory, help="bytes per step, e.g. 2G")
    parser.add_argument("--cpu", type=float, help="CPUs per step, e.g. 1.5")
    parser.add_argument("--cgroup-root", default=DEFAULT_CGROUP_ROOT)
    parser.add_argument(
        "--parent",
        default=DEFAULT_STEP_PARENT,
        help="where BuildKit puts step cgroups, below each controller (default docker/buildkit)",
    )
    parser.add_argument(
        "--process",
        help="the engine's process name (e.g. dockerd) when it runs in another container "
        "of the same pod: its cgroup hierarchy is reached through /proc/PID/root",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    limits = StepLimits(args.memory or None, args.cpu or None)
    if not limits.active:
        parser.error("give --memory, --cpu or both")
    root = args.cgroup_root
    if args.process:
        root = _wait_for_process(args.process) + root
    reason = unsupported_reason(root, args.parent, limits)
    if reason is not None:
        logging.error("Build step limits cannot be enforced: %s", reason)
        return 1
    asyncio.run(_serve(StepLimiter(limits, root, args.parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
