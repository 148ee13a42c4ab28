"""Build on this machine's container engine: fetch, build in a container, push.

A build is three steps with three privileges (see the security explanation):
the service fetches the repository into the build's own directory
(:mod:`binderhub_service.fetch`), repo2docker builds it in a container of its own
that holds only the checkout and the engine's socket
(:mod:`binderhub_service.build_container`), and the service pushes the image
with the registry credentials the build never sees.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from traitlets import Float, Integer, List, Unicode, default, observe

from ..build_container import (
    CONFIG_FILE,
    OPERATOR_CONFIG_FILE,
    REPO_DIR,
    WORK_DIR_LABEL,
    BuildContainer,
    docker_run_args,
    repo2docker_config,
)
from ..engine_storage import BuildHostStorage
from ..errors import BuildFailed, ServiceError, UpstreamError
from ..events import BuildEvent, Phase
from ..failures import FailureClass, OutputClassifier, Step
from ..fetch import CheckURL, Fetcher, FetchSettings, Source, source_provider
from ..repo2docker import build_args, parse_log_line
from ..step_limits import (
    DEFAULT_CGROUP_ROOT,
    DEFAULT_STEP_PARENT,
    BuildOutOfMemory,
    StepLimiter,
    oom_killed,
    unsupported_reason,
)
from .base import BuildExecutor, BuildRequest, EmitFunc

# repo2docker relays build output line by line; a single line can still be long.
MAX_LINE_BYTES = 4 * 1024 * 1024
# Lines of a build container that are not repo2docker's JSON log, logged for the operator.
MAX_DROPPED_LINES = 50


GROUP_FILE = "process-group"
# What users are told when pushing failed, by why.
PUSH_FAILURES = {
    FailureClass.REGISTRY_UNAVAILABLE: "The registry could not be reached to push the image.",
    FailureClass.ENGINE_UNAVAILABLE: "The container engine could not be reached to push the image.",
    FailureClass.DISK_FULL: "Pushing the image failed: a disk is full.",
    FailureClass.PUSH_FAILED: "Pushing the image to the registry failed.",
}


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


def is_rootless(security_options: str) -> bool:
    """Whether ``docker info``'s SecurityOptions (as JSON) name a rootless engine."""
    try:
        options = json.loads(security_options)
    except ValueError:
        return False
    return isinstance(options, list) and "name=rootless" in options


def group_is_alive(pgid: int, started: str) -> bool:
    """Whether the group's leader is still the process recorded (pids are reused)."""
    return _start_time(pgid) == started


class LocalDockerExecutor(BuildExecutor):
    """Builds on the local container engine (the default executor).

    Each build has its own directory below :attr:`work_dir`: the service fetches
    the repository there, then runs repo2docker in a container of
    :attr:`build_image` with the checkout mounted read-only, the engine's socket,
    no network, no capabilities and an environment built from scratch, and
    finally pushes the image itself. Cancelling a build removes its container
    and stops its processes; the directory is removed when the build ends.

    With a rootless engine (its ``docker info`` names ``rootless``) the service
    must run as the engine's user. Build containers then run as the user
    namespace's root, which is that user on the host (with every capability
    dropped): the only user of the namespace that can read the service's build
    directories.

    The engine's disk is looked after by :attr:`storage`
    (:class:`~binderhub_service.engine_storage.BuildHostStorage`).
    """

    name = "local"

    build_image = Unicode(
        "binderhub-service:dev",
        help="""The image build containers run (it must hold repo2docker, the docker CLI and
        its buildx plugin, as the service's own image does). It must exist in the local
        engine: it is never pulled, and the service does not start without it.
        Default ``binderhub-service:dev`` (what ``.ci/build-service-image`` builds).""",
    ).tag(config=True)

    repo2docker_command = List(
        Unicode(),
        default_value=["repo2docker"],
        minlen=1,
        help="""The command that runs repo2docker inside the build image.
        Default ``["repo2docker"]``.""",
    ).tag(config=True)

    docker_executable = Unicode(
        "docker",
        help="""The service's docker CLI: starts build containers, pushes images, checks the
        engine's health and looks up local images. Default ``docker``.""",
    ).tag(config=True)

    engine_socket = Unicode(
        help="""The engine's Unix socket, mounted into build containers (the only way they
        reach the engine); the service's docker CLI uses it too unless ``DOCKER_HOST`` or
        ``DOCKER_CONTEXT`` is set in the service's environment. Default: the path of
        ``DOCKER_HOST`` when it is a ``unix://`` address (a rootless engine's, e.g.
        ``/run/user/1000/docker.sock``), else ``/var/run/docker.sock``.""",
    ).tag(config=True)

    @default("engine_socket")
    def _default_engine_socket(self) -> str:
        host = os.environ.get("DOCKER_HOST", "")
        if host.startswith("unix://") and len(host) > len("unix://"):
            return host[len("unix://") :]
        return "/var/run/docker.sock"

    git_executable = Unicode(
        "git", help="The git command the service clones repositories with. Default ``git``."
    ).tag(config=True)

    max_checkout_bytes = Integer(
        10 * 2**30,
        help="""Bytes a fetched repository may take on disk before the build fails.
        Default 10 GiB (``10737418240``).""",
    ).tag(config=True)

    push_timeout = Float(
        3600.0, help="Seconds pushing an image may take before the build fails. Default 3600."
    ).tag(config=True)

    work_dir = Unicode(
        "",
        help="""Directory for builds' working directories (created with mode 0700; each build's
        removed when it ends; after a crash, the next start stops the builds left there and
        removes them). The service sets it to ``<data_dir>/builds``; it must be the service's
        own directory, never a shared temporary one.""",
    ).tag(config=True)

    kill_grace_period = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when a build is cancelled. Default 5.",
    ).tag(config=True)

    engine_timeout = Float(
        10.0, help="Seconds to wait for the container engine's CLI to answer. Default 10."
    ).tag(config=True)

    cgroup_root = Unicode(
        DEFAULT_CGROUP_ROOT,
        help="""Where the engine host's cgroup hierarchies are mounted, for
        ``build_memory_limit`` and ``build_cpu_limit``. Default ``/sys/fs/cgroup``.""",
    ).tag(config=True)

    build_step_cgroup = Unicode(
        DEFAULT_STEP_PARENT,
        help="""The cgroup, below each controller's hierarchy, in which the engine's BuildKit
        creates its build steps' cgroups: the engine's cgroup parent (``docker`` unless
        dockerd runs with ``--cgroup-parent``) followed by ``buildkit``. The step limits
        apply to every step created there, whoever started the build: give the service
        an engine of its own. Default ``docker/buildkit``.""",
    ).tag(config=True)

    # Set by the service: the docker config.json with the registry's credentials
    # (DockerRegistry.docker_config_path), used by the push step only.
    push_docker_config: str = ""
    # The build step limiter, while it runs (started by prepare()).
    _limiter: StepLimiter | None = None
    # Set by the service: awaited with each clone URL before cloning; raises to refuse it.
    check_url: CheckURL | None = None
    # Whether the engine is rootless, once it has answered.
    _rootless: bool | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage = BuildHostStorage(parent=self)
        self.storage.engine_socket = self.engine_socket
        self.storage.docker = self._docker

    @observe("engine_socket")
    def _engine_socket_changed(self, change: dict[str, Any]) -> None:
        if hasattr(self, "storage"):
            self.storage.engine_socket = change["new"]

    def _work_dir(self) -> str:
        if not self.work_dir:
            raise ServiceError("LocalDockerExecutor.work_dir is not set.")
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        os.chmod(self.work_dir, 0o700)
        return self.work_dir

    def _engine_env(self, home: str, docker_config: str) -> dict[str, str]:
        """The environment of the service's own docker CLI calls for a build."""
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": home,
            "DOCKER_CONFIG": docker_config,
        }
        env.update(self._engine_address())
        return env

    def _engine_address(self) -> dict[str, str]:
        """How the service's docker CLI finds the engine: the environment's, else the socket."""
        chosen = {k: os.environ[k] for k in ("DOCKER_HOST", "DOCKER_CONTEXT") if k in os.environ}
        return chosen or {"DOCKER_HOST": f"unix://{self.engine_socket}"}

    def _source(self, request: BuildRequest) -> Source:
        provider = source_provider(request.content_providers)
        return Source(request.repo_url, request.ref, provider, request.git_credential)

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        tmpdir = tempfile.mkdtemp(prefix="binderhub-build-", dir=self._work_dir())
        home = os.path.join(tmpdir, "home")
        os.makedirs(os.path.join(home, "no-credentials"), mode=0o700)

        def record(pid: int) -> None:
            write_group_file(tmpdir, pid)

        settings = FetchSettings(
            git_executable=self.git_executable,
            timeout=self.fetch_timeout,
            max_bytes=self.max_checkout_bytes,
            on_start=record,
        )
        fetcher = Fetcher(
            settings,
            lambda text: self.log.warning("Build %s: %s", request.build_id, text),
            self.check_url,
        )
        try:
            await self.storage.wait_for_space(emit)
            checkout = await fetcher.fetch(self._source(request), tmpdir, emit)
            self.log.info(
                "Build %s: running repo2docker for %s", request.build_id, request.image_name
            )
            # The build cache is pruned after the push, once the local copy may be gone.
            async with self.storage.building():
                await self._build(request, tmpdir, checkout, emit, record)
                if request.push:
                    await self._push(request, tmpdir, emit, record)
                    await self.storage.pushed(request.image_name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _container(
        self, request: BuildRequest, tmpdir: str, checkout: str, rootless: bool
    ) -> BuildContainer:
        config_dir = os.path.join(tmpdir, "config")
        os.makedirs(config_dir, mode=0o700)
        with open(os.path.join(config_dir, os.path.basename(CONFIG_FILE)), "w") as f:
            f.write(
                repo2docker_config(OPERATOR_CONFIG_FILE if self.repo2docker_config_file else None)
            )
        # repo2docker builds the checkout as a local folder and never pushes.
        options = replace(
            self.repo2docker_options(request),
            repo_url=REPO_DIR,
            push=False,
            config_file=CONFIG_FILE,
        )
        return BuildContainer(
            name=f"binderhub-build-{request.build_id}",
            image=self.build_image,
            build_id=request.build_id,
            work_dir=self.work_dir,
            checkout=checkout,
            config_dir=config_dir,
            engine_socket=self.engine_socket,
            # A rootless engine's namespace maps its root to the service's user.
            uid=0 if rootless else os.getuid(),
            gid=0 if rootless else os.getgid(),
            socket_gid=0 if rootless else os.stat(self.engine_socket).st_gid,
            command=[*self.repo2docker_command, *build_args(options)],
            operator_config=os.path.abspath(self.repo2docker_config_file)
            if self.repo2docker_config_file
            else None,
            env=dict(self.build_env),
        )

    async def _build(
        self,
        request: BuildRequest,
        tmpdir: str,
        checkout: str,
        emit: EmitFunc,
        record: Callable[[int], None],
    ) -> None:
        try:
            rootless = await self._engine_rootless()
            self._check_engine_user(rootless)
            spec = self._container(request, tmpdir, checkout, rootless)
        except (OSError, ValueError, ServiceError) as e:
            self.log.error("Build %s: cannot set up the build container: %s", request.build_id, e)
            if isinstance(e, FileNotFoundError | ConnectionError | UpstreamError):
                raise BuildFailed(
                    "The container engine could not be reached.",
                    failure_class=FailureClass.ENGINE_UNAVAILABLE,
                ) from None
            raise BuildFailed("The service could not start the build; ask its operator.") from None
        home = os.path.join(tmpdir, "home")
        env = self._engine_env(home, os.path.join(home, "no-credentials"))
        proc = await self._start_engine_cli(docker_run_args(spec), env, home, record)
        classifier = OutputClassifier(Step.BUILD)
        try:
            failure, out_of_memory = await self._relay(proc, emit, request.build_id, classifier)
            returncode = await proc.wait()
        except BaseException:
            await self._remove_container(spec.name, env)
            await self._kill(proc)
            raise
        if returncode != 0:
            if out_of_memory:
                raise BuildOutOfMemory(self.step_limits.memory)
            failure_class = classifier.classify(returncode)
            self.log.warning(
                "Build %s: the build container exited with %s (%s)",
                request.build_id,
                returncode,
                failure_class,
            )
            if failure_class is FailureClass.ENGINE_UNAVAILABLE:
                failure = "The container engine could not be reached."
            raise BuildFailed(
                failure or f"The build stopped with exit code {returncode}.",
                failure_class=failure_class,
            )

    async def _start_engine_cli(
        self,
        args: list[str],
        env: dict[str, str],
        home: str,
        record: Callable[[int], None],
    ) -> asyncio.subprocess.Process:
        """Start the docker CLI in a process group of its own, its output merged and piped."""
        proc = await asyncio.create_subprocess_exec(
            self.docker_executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            limit=MAX_LINE_BYTES,
        )
        record(proc.pid)
        return proc

    async def _push(
        self, request: BuildRequest, tmpdir: str, emit: EmitFunc, record: Callable[[int], None]
    ) -> None:
        """Push the built image with the service's registry credentials."""
        home = os.path.join(tmpdir, "home")
        env = self._engine_env(home, self._push_config_dir(tmpdir))
        emit(BuildEvent(Phase.PUSHING, f"Pushing {request.image_name}...\n"))
        proc = await self._start_engine_cli(["push", "--", request.image_name], env, home, record)
        assert proc.stdout is not None
        last: list[str] = []
        classifier = OutputClassifier(Step.PUSH)
        try:
            async with asyncio.timeout(self.push_timeout):
                while raw := await proc.stdout.readline():
                    line = raw.decode(errors="replace")
                    last = [*last, line.strip()][-5:]
                    classifier.feed(line)
                    emit(BuildEvent(Phase.PUSHING, line))
                returncode = await proc.wait()
        except TimeoutError:
            await self._kill(proc)
            raise BuildFailed(
                f"Pushing the image took longer than {self.push_timeout:g} seconds.",
                failure_class=FailureClass.PUSH_FAILED,
            ) from None
        except BaseException:
            await self._kill(proc)
            raise
        if returncode != 0:
            failure_class = classifier.classify(returncode)
            self.log.warning(
                "Build %s: docker push exited with %s (%s): %s",
                request.build_id,
                returncode,
                failure_class,
                " | ".join(last),
            )
            raise BuildFailed(PUSH_FAILURES[failure_class], failure_class=failure_class)

    def _push_config_dir(self, tmpdir: str) -> str:
        """A ``DOCKER_CONFIG`` directory whose ``config.json`` is the registry credentials."""
        path = self.push_docker_config
        if path and os.path.basename(path) == "config.json":
            return os.path.dirname(os.path.abspath(path))
        directory = os.path.join(tmpdir, "push-config")
        os.makedirs(directory, mode=0o700)
        if path and os.path.exists(path):
            os.symlink(os.path.abspath(path), os.path.join(directory, "config.json"))
        return directory

    async def _remove_container(self, name: str, env: dict[str, str]) -> None:
        """Remove a build container (this stops its build in the engine)."""
        try:
            await self._docker("rm", "--force", name, env=env)
        except UpstreamError:
            self.log.warning("Could not remove build container %s", name)

    async def _relay(
        self,
        proc: asyncio.subprocess.Process,
        emit: EmitFunc,
        build_id: str,
        classifier: OutputClassifier,
    ) -> tuple[str | None, bool]:
        """Turn repo2docker's output into events; return its failure message, if any,
        and whether a build step was killed for running out of memory.

        Only repo2docker's JSON log lines are relayed: other lines come from the
        service's docker CLI (which names the service's paths) or are tracebacks,
        and go to the service log instead. ``classifier`` reads every line.
        """
        assert proc.stdout is not None
        failure = None
        dropped = 0
        out_of_memory = False
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                # A line longer than the limit: pass on what was buffered.
                raw = await proc.stdout.read(MAX_LINE_BYTES)
            if not raw:
                return failure, out_of_memory
            line = raw.decode(errors="replace")
            if not line.lstrip().startswith("{"):
                classifier.feed(line)
                if line.strip() and dropped < MAX_DROPPED_LINES:
                    dropped += 1
                    self.log.warning("Build %s: %s", build_id, line.strip()[:2000])
                continue
            parsed = parse_log_line(line)
            classifier.feed(parsed.text)
            if parsed.failure is not None:
                failure = parsed.failure
            if parsed.event is not None:
                out_of_memory = out_of_memory or oom_killed(parsed.event.message)
                emit(parsed.event)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """Stop a build's process and everything it started, then reap it."""
        await self._stop_group(proc.pid)
        await proc.wait()

    async def _stop_group(self, pgid: int) -> None:
        """Stop a build's whole process group: SIGTERM, then SIGKILL after the grace period."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace_period), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            if await self._group_ended(pgid, wait):
                return

    async def recover(self) -> None:
        """Stop builds an earlier run left behind (it was killed) and remove their directories.

        Build containers carry the work directory in a label; each build directory
        records its current process group, stopped only if its leader is still the
        process that was started. Only :attr:`work_dir`, the service's own, is searched.
        """
        work_dir = self._work_dir()
        code, out = await self._docker(
            "ps", "--all", "--quiet", "--filter", f"label={WORK_DIR_LABEL}={work_dir}"
        )
        for container in out.split() if code == 0 else []:
            self.log.warning("Removing a build container left by an earlier run (%s)", container)
            await self._docker("rm", "--force", container)
        for entry in os.scandir(work_dir):
            if not entry.name.startswith("binderhub-build-") or not entry.is_dir(
                follow_symlinks=False
            ):
                continue
            group = read_group_file(entry.path)
            if group is not None and group_is_alive(*group):
                self.log.warning("Stopping a build left running by an earlier run (%s)", entry.path)
                await self._stop_group(group[0])
            shutil.rmtree(entry.path, ignore_errors=True)

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

    async def _docker(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self.docker_executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env if env is not None else {**os.environ, **self._engine_address()},
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

    async def _engine_rootless(self) -> bool:
        """Whether the engine runs rootless (asked once it answers, then remembered)."""
        if self._rootless is None:
            code, out = await self._docker("info", "--format", "{{json .SecurityOptions}}")
            if code != 0:
                raise UpstreamError("The container engine is not answering.")
            self._rootless = is_rootless(out)
        return self._rootless

    def _check_engine_user(self, rootless: bool) -> None:
        """A rootless engine must be the service's own user's, or builds cannot read their files."""
        if not rootless:
            return
        try:
            owner = os.stat(self.engine_socket).st_uid
        except OSError:
            raise ServiceError(
                f"The engine's socket {self.engine_socket} is missing "
                "(LocalDockerExecutor.engine_socket)."
            ) from None
        if owner != os.getuid():
            raise ServiceError(
                f"The rootless engine at {self.engine_socket} belongs to uid {owner}, the "
                f"service runs as uid {os.getuid()}: run the service as the engine's user."
            )

    async def has_image(self, image_name: str) -> bool:
        code, _ = await self._docker("image", "inspect", "--format", "{{.Id}}", image_name)
        return code == 0

    async def health(self) -> dict[str, Any]:
        code, out = await self._docker("version", "--format", "{{.Server.Version}}")
        if code != 0:
            self.log.warning("Container engine check failed: %s", out)
            raise UpstreamError("The container engine is not answering.")
        code, _ = await self._docker("image", "inspect", "--format", "{{.Id}}", self.build_image)
        if code != 0:
            raise UpstreamError(self._missing_image())
        rootless = await self._engine_rootless()
        self._check_engine_user(rootless)
        return {
            "engine_version": out,
            "build_image": self.build_image,
            "rootless": rootless,
            "build_step_limits": self._step_limits_state(),
        }

    def _step_limits_state(self) -> str:
        """``memory 2 GiB, 1.5 CPU`` while enforced, ``none``, or ``not enforced``."""
        if self._limiter is not None:
            return self.step_limits.describe()
        return "not enforced" if self.step_limits.active else "none"

    def _missing_image(self) -> str:
        return (
            f"The build image {self.build_image} is not in the container engine: build it "
            "(.ci/build-service-image does) or set LocalDockerExecutor.build_image."
        )

    async def prepare(self) -> None:
        """Refuse to start when the engine answers but has no build image; start the
        build step limits, or warn that they cannot be enforced.

        An engine that does not answer is only logged: it may come later, and
        ``/health`` reports it meanwhile.
        """
        try:
            code, out = await self._docker("version", "--format", "{{.Server.Version}}")
            if code == 0:
                code, _ = await self._docker(
                    "image", "inspect", "--format", "{{.Id}}", self.build_image
                )
                if code != 0:
                    raise ServiceError(f"Cannot start: {self._missing_image()}")
                rootless = await self._engine_rootless()
                try:
                    self._check_engine_user(rootless)
                except ServiceError as e:
                    raise ServiceError(f"Cannot start: {e.message}") from None
                if rootless:
                    self.log.info("The container engine is rootless.")
                await self._start_step_limits()
                await self.storage.check()
                return
        except UpstreamError:
            out = "no answer in time"
        self.log.warning("The container engine is not answering (%s); builds will fail.", out)
        await self._start_step_limits()

    async def _step_limits_unsupported(self) -> str | None:
        """Why this engine's build steps cannot be limited from here, or None."""
        host = os.environ.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            return f"the engine is not on this host (DOCKER_HOST={host})"
        try:
            code, out = await self._docker(
                "info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}}"
            )
        except UpstreamError:
            code, out = 1, ""
        if code == 0 and out != "cgroupfs 1":
            driver, _, version = out.partition(" ")
            return f"the engine uses the {driver} cgroup driver with cgroup v{version}"
        return unsupported_reason(self.cgroup_root, self.build_step_cgroup, self.step_limits)

    async def _start_step_limits(self) -> None:
        limits = self.step_limits
        if not limits.active or self._limiter is not None:
            return
        reason = await self._step_limits_unsupported()
        if reason is None:
            limiter = StepLimiter(limits, self.cgroup_root, self.build_step_cgroup, self.log)
            try:
                limiter.start()
            except OSError as e:
                reason = str(e)
            else:
                self._limiter = limiter
                self.log.info("Each build step is limited to %s", limits.describe())
                return
        self.log.warning(
            "The build step limits (%s: LocalDockerExecutor.build_memory_limit and "
            "build_cpu_limit) cannot be enforced: %s. Builds run without them.",
            limits.describe(),
            reason,
        )

    async def shutdown(self) -> None:
        if self._limiter is not None:
            self._limiter.stop()
            self._limiter = None

    def builder_version(self) -> str:
        return importlib.metadata.version("jupyter-repo2docker")
