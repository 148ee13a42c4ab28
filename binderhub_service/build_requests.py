"""From a requested spec to a build: the one request path of the build stream and the REST API.

Both ways of asking for an image (``GET build/...`` and ``POST api/v1/builds``)
call :meth:`BuildRequests.request`, which answers "join, found, or start" and
records the answer the same way: a user who joins a build becomes one of its
requesters, and an image found already built leaves a succeeded record of its
own. Handlers only translate the answer into HTTP.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from dataclasses import dataclass, field

from tornado.log import app_log

from .auth import Identity
from .builds import Build, BuildManager
from .errors import Forbidden, InvalidSpec, ServiceError
from .images import ImageLookup
from .limits import UserLimits
from .metrics import IMAGE_FOUND_COUNT
from .naming import image_name
from .providers.base import RepoProvider, RepoSpec
from .providers.cache import ResolutionCache
from .providers.catalog import RepoProviderCatalog
from .singleflight import SingleFlight
from .states import BuildState
from .store import BuildRecorder


@dataclass(frozen=True)
class BuildTarget:
    """A validated spec, its resolved ref and the image that holds it."""

    prefix: str
    spec: str
    provider: RepoProvider
    repo: RepoSpec
    resolved_ref: str
    image_name: str


class Outcome(enum.StrEnum):
    """How a request was answered."""

    JOINED = "joined"
    FOUND = "found"
    STARTED = "started"


@dataclass(frozen=True)
class Answer:
    """A request's outcome: the build to follow, or (found) the record that says so."""

    outcome: Outcome
    target: BuildTarget
    build: Build | None = None
    found_record_id: str | None = None


class NotCancellable(ServiceError):
    status_code = 409


@dataclass
class BuildRequests:
    """Authorise, resolve, look for the image, and start or join its build; cancel builds.

    Identical ref resolutions in flight at once share one call to the provider;
    with ``resolved_ref_seconds`` above 0 a resolution is reused for that long.
    """

    manager: BuildManager
    catalog: RepoProviderCatalog
    images: ImageLookup
    image_prefix: str
    push: bool
    recorder: BuildRecorder
    user_limits: UserLimits | None = None
    resolved_ref_seconds: float = 0.0
    _resolutions: SingleFlight[str] = field(default_factory=SingleFlight, init=False)
    _found_records: SingleFlight[str | None] = field(default_factory=SingleFlight, init=False)
    _resolved: ResolutionCache = field(default_factory=ResolutionCache, init=False)

    @staticmethod
    def authorize(identity: Identity) -> None:
        """Refuse before any upstream call when the requester may not build."""
        if not identity.can_build:
            raise Forbidden(
                f"{identity.name} may not build images here: the hub token lacks the build scope."
            )

    async def request(
        self, identity: Identity, prefix: str, spec: str, *, resume: bool = False
    ) -> Answer:
        """Join the image's build, report the image found, or start its build.

        ``resume``: the caller follows a stream it had begun, so a build still in
        memory is joined even when it has ended.
        """
        self.authorize(identity)
        target = await self.resolve(prefix, spec)
        build = self.manager.find(target.image_name)
        if build is not None and (not build.done or resume):
            await self._add_requester(build, identity.name)
            return Answer(Outcome.JOINED, target, build=build)
        if await self.image_exists(target):
            record_id = await self._found_records.run(
                (target.image_name, identity.name), lambda: self._record_found(target, identity)
            )
            return Answer(Outcome.FOUND, target, found_record_id=record_id)
        build = self.start(target, identity)
        if build.requester != identity.name:
            # Another request started it meanwhile.
            await self._add_requester(build, identity.name)
            return Answer(Outcome.JOINED, target, build=build)
        return Answer(Outcome.STARTED, target, build=build)

    async def resolve(self, prefix: str, spec: str) -> BuildTarget:
        """Validate the spec and resolve its ref; input no parser accepts is a 400."""
        try:
            provider, repo = self.catalog.parse(prefix, spec)
            resolved_ref = await self._resolve_ref(prefix, spec, provider, repo)
        except ValueError:
            raise InvalidSpec(f"The spec {spec[:200]!r} is not valid.") from None
        name = image_name(self.image_prefix, repo.slug, resolved_ref)
        return BuildTarget(prefix, spec, provider, repo, resolved_ref, name)

    async def _resolve_ref(
        self, prefix: str, spec: str, provider: RepoProvider, repo: RepoSpec
    ) -> str:
        key = (prefix, spec)
        reused = self._resolved.get_expiring(key)
        if reused is not None:
            return reused

        async def resolve() -> str:
            ref = await provider.resolve_ref(repo)
            if self.resolved_ref_seconds > 0:
                self._resolved.set_expiring(key, ref, self.resolved_ref_seconds)
            return ref

        return await self._resolutions.run(key, resolve)

    async def image_exists(self, target: BuildTarget) -> bool:
        found = await self.images.has_image(target.image_name)
        if found:
            IMAGE_FOUND_COUNT.labels(provider=target.prefix).inc()
        return found

    def start(self, target: BuildTarget, identity: Identity) -> Build:
        """The running build of the target's image, or a new one within the user's limits."""
        current = self.manager.find(target.image_name)
        joining = current is not None and not current.done
        if self.user_limits is not None and not joining:
            self.user_limits.check_new_build(
                identity.limit_key, self.manager.count_unfinished(identity.limit_key)
            )
        return self.manager.request_build(
            provider=target.prefix,
            repo_url=target.provider.build_url(target.repo, target.resolved_ref),
            ref=target.resolved_ref,
            image_name=target.image_name,
            push=self.push,
            requester=identity.name,
            limit_key=identity.limit_key,
            spec=target.spec,
            content_providers=tuple(target.provider.repo2docker_content_providers()),
            git_credential=target.provider.git_credentials(target.repo),
        )

    async def cancel(self, identity: Identity, build_id: str, timeout: float) -> None:
        """Cancel a build ``identity`` started (any, for an admin) and wait until it ends."""
        build = self.manager.get(build_id)
        record = await self.recorder.get_build(build_id) if build is None else None
        requester = build.requester if build is not None else record and record.requester
        if not identity.is_admin and requester != identity.name:
            raise Forbidden("Only the user who started a build can cancel it.")
        if build is None or build.done:
            state = build.state.value if build is not None else record and record.state
            raise NotCancellable(f"Build {build_id} has already ended ({state}).")
        self.manager.cancel(build)
        async with asyncio.timeout(timeout):
            async for _ in build.stream(len(build.frames), keepalive=timeout):
                pass

    async def _add_requester(self, build: Build, user: str) -> None:
        """Let ``user``, who joined ``build``, see it; a failure to record is logged."""
        if user == build.requester:
            return
        try:
            await self.recorder.add_requester(build.id, user)
        except Exception:
            app_log.exception("Could not record that %s joined build %s", user, build.id)

    async def _record_found(self, target: BuildTarget, identity: Identity) -> str | None:
        """The id of the user's succeeded record of the image, written now if there is none."""
        try:
            record = await self.recorder.latest_build(
                target.image_name, BuildState.SUCCEEDED, identity.name
            )
            if record is not None:
                return record.id
            build_id = uuid.uuid4().hex
            await self.recorder.record_found_image(
                build_id=build_id,
                requester=identity.name,
                provider=target.prefix,
                spec=target.spec,
                repo_url=target.repo.repo_url,
                ref=target.resolved_ref,
                image_name=target.image_name,
            )
            return build_id
        except Exception:
            app_log.exception("Could not record that %s found %s", identity.name, target.image_name)
            return None
