"""The contract every build executor keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.traitlets import ByteSpecification
from traitlets import Dict, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..events import BuildEvent
from ..repo2docker import Repo2DockerOptions
from ..step_limits import StepLimits

EmitFunc = Callable[[BuildEvent], None]
# The least build_memory_limit (bytes): less, and no step could start.
MIN_STEP_MEMORY = 16 * 2**20


@dataclass(frozen=True)
class BuildRequest:
    """What an executor needs to run one build; every field is already validated.

    ``content_providers`` are dotted paths of the repo2docker content providers
    the build may use (empty: repo2docker's defaults).
    """

    build_id: str
    provider: str
    repo_url: str
    ref: str
    image_name: str
    push: bool
    content_providers: tuple[str, ...] = ()
    # The value of repo2docker's GIT_CREDENTIAL_ENV for private repositories.
    git_credential: str | None = field(default=None, repr=False)
    # For a build followed again after a restart: the ``log_position`` of the
    # last event already recorded; the executor emits only the lines after it.
    resume_after: str | None = None


class StepMemory(ByteSpecification):
    """A build step's memory limit: like ``ByteSpecification``, with errors that name the
    option and a floor below which no step could start; 0 or ``None`` for no limit."""

    def validate(self, obj: Any, value: Any) -> Any:
        option = f"c.{type(obj).__name__}.{self.name}"
        try:
            plain = isinstance(value, str) and value.strip().isdigit()
            size = super().validate(obj, int(value) if plain else value)
        except (TraitError, TypeError, IndexError):
            raise TraitError(
                f"{option} = {value!r} is not valid: bytes, or a number with a suffix "
                "K, M, G or T, such as '2G'."
            ) from None
        if size is not None and size != 0 and size < MIN_STEP_MEMORY:
            raise TraitError(
                f"{option} = {value!r} is not valid: 0 (no limit) or at least 16M "
                "(what a build step's shell needs)."
            )
        return size


class BuildExecutor(LoggingConfigurable):
    """Runs repo2docker for one build at a time per call of :meth:`run`.

    ``run`` emits events as they come and returns when the image exists (and is
    pushed when ``request.push``). It raises :class:`~binderhub_service.errors.BuildFailed`
    with a user-facing reason when it does not. The caller cancels the task that
    awaits ``run`` to cancel or time out a build: ``run`` must then stop
    everything it started before re-raising :class:`asyncio.CancelledError`.
    """

    name = "base"

    user_id = Int(
        1000,
        help="Numeric id of the user that owns the files in built images (repo2docker --user-id).",
    ).tag(config=True)

    user_name = Unicode(
        "jovyan",
        help="Name of the user in built images (repo2docker --user-name).",
    ).tag(config=True)

    repo2docker_config_file = Unicode(
        "",
        help="""Path of a repo2docker (traitlets) config file passed as ``--config``.

        Empty (the default) passes none. Use it for engine options such as
        ``c.DockerEngine.extra_buildx_build_args = ["--network=none"]``. The local
        executor mounts it read-only into build containers. Never give builds
        ``--network=host``: they would reach everything the engine's host reaches.
        """,
    ).tag(config=True)

    repo2docker_extra_args = List(
        Unicode(),
        help="""Extra command-line arguments for repo2docker, added before the repository.

        Example: ``["--cache-from", "registry.example.org/cache"]``. Default: none.
        """,
    ).tag(config=True)

    build_env = Dict(
        Unicode(),
        help="""Environment variables for repo2docker, e.g. ``{'BUILDKIT_PROGRESS': 'plain'}``.

        The local executor sets them (and nothing of the service's own environment) in
        build containers. Never put a secret here: a build can read them. Default: none.
        """,
    ).tag(config=True)

    build_memory_limit = StepMemory(
        None,
        allow_none=True,
        help="""Memory each step of a build (each ``RUN`` step of the image build) may use:
        bytes, or a number with a suffix K, M, G or T, e.g. ``"2G"`` (at least ``16M``).

        A step that goes over it is stopped by the kernel, and the build fails saying it
        ran out of memory and naming this limit. The local executor sets it on every step
        the engine's BuildKit runs (cgroup v1 with the ``cgroupfs`` driver, the service
        running as root on the engine's host; otherwise it warns at start that the limit
        is not enforced). Build pods' steps run in the build daemon: the Helm chart's
        ``buildDaemon.stepLimits`` sets the limit there, and this value names it in
        failure messages. Default: none (``None``).
        """,
    ).tag(config=True)

    build_cpu_limit = Float(
        0.0,
        help="""CPUs each step of a build may use, e.g. ``1.5`` (CFS quota per step).

        Enforced where ``build_memory_limit`` is, in the same way.
        Default 0: no limit.
        """,
    ).tag(config=True)

    @validate("build_cpu_limit")
    def _valid_cpu_limit(self, proposal: dict[str, Any]) -> float:
        value = proposal["value"]
        if value < 0:
            raise TraitError(
                f"c.{type(self).__name__}.build_cpu_limit = {value!r} is not valid: "
                "0 (no limit) or a positive number of CPUs."
            )
        return value

    @property
    def step_limits(self) -> StepLimits:
        """The limits each build step gets."""
        return StepLimits.from_config(self.build_memory_limit, self.build_cpu_limit)

    fetch_timeout = Float(
        600.0,
        help="""Seconds fetching a repository (its clone, or a record's download) may take
        before the build fails with the class ``timeout``, whatever is left of the build's
        own timeout: a host that stops answering holds a build slot this long at most.
        Default 600; e.g. 120 where repositories are small.""",
    ).tag(config=True)

    def memory_limit(self) -> int | str | None:
        """The memory limit of a build's steps, named in ``out_of_memory`` hints: bytes or a
        quantity such as ``4Gi``; None when the executor sets none."""
        return self.build_memory_limit

    def repo2docker_options(self, request: BuildRequest) -> Repo2DockerOptions:
        return Repo2DockerOptions(
            repo_url=request.repo_url,
            ref=request.ref,
            image_name=request.image_name,
            push=request.push,
            user_id=self.user_id,
            user_name=self.user_name,
            config_file=self.repo2docker_config_file or None,
            extra_args=tuple(self.repo2docker_extra_args),
        )

    async def run(self, request: BuildRequest, emit: EmitFunc) -> None:
        raise NotImplementedError

    # Whether builds outlive the service (build pods do; local processes do not).
    can_reattach = False
    # Set by detach(): cancelled runs then stop following their builds without stopping them.
    detaching = False

    def detach(self) -> None:
        """Before a shutdown: builds cancelled from now on are left running, not stopped."""
        self.detaching = True

    async def reattach(self, request: BuildRequest, emit: EmitFunc) -> None:
        """Follow ``request``'s build started by an earlier run of the service, like :meth:`run`.

        Only executors with ``can_reattach`` implement it; it emits the build's
        log after ``request.resume_after`` (from the start without one) and
        raises :class:`~binderhub_service.errors.BuildFailed` when the build
        failed or is gone.
        """
        raise NotImplementedError

    async def prepare(self) -> None:
        """At start: check that builds can run; raise a ServiceError with one clear line if not."""

    async def recover(self) -> None:
        """At start: clean up what an earlier run, stopped without shutting down, left."""

    async def has_image(self, image_name: str) -> bool:
        """Whether the image exists where this executor builds (used without a registry)."""
        raise NotImplementedError

    async def health(self) -> dict[str, Any]:
        """Check the executor's backend; return details, raise on failure."""
        raise NotImplementedError

    def builder_version(self) -> str:
        """The repo2docker version builds run with."""
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Release what the executor holds (clients, sessions)."""
