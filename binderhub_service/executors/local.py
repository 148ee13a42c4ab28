"""Run repo2docker as a subprocess on this machine's container engine."""

from __future__ import annotations

import asyncio
import glob
import importlib.metadata
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from typing import Any

from traitlets import Float, List, Unicode

from ..errors import BuildFailed, UpstreamError
from ..providers.credentials import git_credential_env
from ..repo2docker import build_args, parse_log_line
from .base import BuildExecutor, BuildRequest, EmitFunc

# repo2docker relays build output line by line; a single line can still be long.
MAX_LINE_BYTES = 4 * 1024 * 1024


GROUP_FILE = "process-group"


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; it ends at the last ")".
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def write_group_file(tmpdir: str, pgid: int) -> None:
    """Record a build's process group (and its leader's start time) in its directory."""
    with open(os.path.join(tmpdir, GROUP_FILE), "w") as f:
        f.write(f"{pgid} {_start_time(pgid) or ''}\n")


def read_group_file(tmpdir: str) -> tuple[int, str] | None:
    try:
        with open(os.path.join(tmpdir, GROUP_FILE)) as f:
            pgid, started = f.read().split()
        return int(pgid), started
    except (OSError, ValueError):
        return None


def group_is_alive(pgid: int, started: str) -> bool:
    """Whether the group's leader is still the process recorded (pids are reused)."""
    return _start_time(pgid) == started


class LocalDockerExecutor(BuildExecutor):
    """Builds with repo2docker on the local container engine (the default executor).

    Each build is a repo2docker process in its own process group with its own
    temporary directory; cancelling the build kills the whole group and removes
    the directory.
    """

    name = "local"

    repo2docker_command = List(
        Unicode(),
        default_value=[sys.executable, "-m", "repo2docker"],
        help="The command that runs repo2docker. Default: this Python's ``-m repo2docker``.",
    ).tag(config=True)

    docker_executable = Unicode(
        "docker",
        help="The docker CLI, used to check the engine's health and look up local images.",
    ).tag(config=True)

    work_dir = Unicode(
        "",
        help="""Directory for builds' working directories (each removed when its build ends;
        after a crash, the next start stops the builds left there and removes them). The
        service defaults it to ``<data_dir>/builds``; empty means the system's temporary
        directory.""",
    ).tag(config=True)

    kill_grace_period = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when a build is cancelled. Default 5.",
    ).tag(config=True)

    engine_timeout = Float(
        10.0, help="Seconds to wait for the container engine's CLI to answer. Default 10."
    ).tag(config=True)

    def _environment(self, request: BuildRequest, tmpdir: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.build_env)
        env["TMPDIR"] = tmpdir
        env["PYTHONUNBUFFERED"] = "1"
        if request.git_credential:
            env.update(git_credential_env(request.git_credential, request.repo_url))
        return env

    def _write_config(self, request: BuildRequest, tmpdir: str) -> str | None:
        """A per-build repo2docker config: the operator's, then the allowed content providers."""
        if not request.content_providers:
            return self.repo2docker_config_file or None
        lines = ["from traitlets.utils.importstring import import_item"]
        if self.repo2docker_config_file:
            lines.append(f"load_subconfig({self.repo2docker_config_file!r})")
        providers = list(request.content_providers)
        lines.append(f"c.Repo2Docker.content_providers = [import_item(p) for p in {providers!r}]")
        path = os.path.join(tmpdir, "repo2docker_config.py")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        if self.work_dir:
            os.makedirs(self.work_dir, exist_ok=True)
        tmpdir = tempfile.mkdtemp(prefix="binderhub-build-", dir=self.work_dir or None)
        options = replace(
            self.repo2docker_options(request), config_file=self._write_config(request, tmpdir)
        )
        argv = [*self.repo2docker_command, *build_args(options)]
        self.log.info("Build %s: running repo2docker for %s", request.build_id, request.image_name)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(request, tmpdir),
                cwd=tmpdir,
                start_new_session=True,
                limit=MAX_LINE_BYTES,
            )
            write_group_file(tmpdir, proc.pid)
            try:
                failure = await self._relay(proc, emit)
                returncode = await proc.wait()
            except BaseException:
                await self._kill(proc)
                raise
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if returncode != 0:
            self.log.warning("Build %s: repo2docker exited with %s", request.build_id, returncode)
            raise BuildFailed(failure or f"repo2docker stopped with exit code {returncode}.")

    async def _relay(self, proc: asyncio.subprocess.Process, emit: EmitFunc) -> str | None:
        """Turn repo2docker's output into events; return its failure message, if any."""
        assert proc.stdout is not None
        failure = None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                # A line longer than the limit: pass on what was buffered.
                raw = await proc.stdout.read(MAX_LINE_BYTES)
            if not raw:
                return failure
            parsed = parse_log_line(raw.decode(errors="replace"))
            if parsed.failure is not None:
                failure = parsed.failure
            if parsed.event is not None:
                emit(parsed.event)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """Stop repo2docker and everything it started, then reap it."""
        await self._stop_group(proc.pid)
        await proc.wait()

    async def _stop_group(self, pgid: int) -> None:
        """Stop a build's whole process group.

        SIGTERM first, so repo2docker and the docker CLI can cancel the build in
        the engine; SIGKILL for whatever is left after the grace period.
        """
        for sig, wait in ((signal.SIGTERM, self.kill_grace_period), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            if await self._group_ended(pgid, wait):
                return

    async def recover(self) -> None:
        """Stop builds an earlier run left behind (it was killed) and remove their directories.

        Each build directory records its process group; a group is stopped only
        if its leader is still the repo2docker process that was started.
        """
        pattern = os.path.join(self.work_dir or tempfile.gettempdir(), "binderhub-build-*")
        for tmpdir in glob.glob(pattern):
            group = read_group_file(tmpdir)
            if group is not None and group_is_alive(*group):
                self.log.warning("Stopping a build left running by an earlier run (%s)", tmpdir)
                await self._stop_group(group[0])
            shutil.rmtree(tmpdir, ignore_errors=True)

    @staticmethod
    async def _group_ended(pgid: int, timeout: float) -> bool:
        """Wait until no process of the group is left; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _docker(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self.docker_executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(self.engine_timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise UpstreamError("The container engine did not answer in time.") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace").strip()

    async def has_image(self, image_name: str) -> bool:
        code, _ = await self._docker("image", "inspect", "--format", "{{.Id}}", image_name)
        return code == 0

    async def health(self) -> dict[str, Any]:
        code, out = await self._docker("version", "--format", "{{.Server.Version}}")
        if code != 0:
            self.log.warning("Container engine check failed: %s", out)
            raise UpstreamError("The container engine is not answering.")
        return {"engine_version": out}

    def builder_version(self) -> str:
        return importlib.metadata.version("jupyter-repo2docker")
