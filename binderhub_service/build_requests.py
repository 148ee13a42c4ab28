"""From a requested spec to a build: the steps the build stream and the REST API share."""

from __future__ import annotations

from dataclasses import dataclass

from .auth import Identity
from .builds import Build, BuildManager
from .errors import Forbidden, InvalidSpec
from .images import ImageLookup
from .limits import UserLimits
from .metrics import IMAGE_FOUND_COUNT
from .naming import image_name
from .providers.base import RepoProvider, RepoSpec
from .providers.catalog import RepoProviderCatalog


@dataclass(frozen=True)
class BuildTarget:
    """A validated spec, its resolved ref and the image that holds it."""

    prefix: str
    spec: str
    provider: RepoProvider
    repo: RepoSpec
    resolved_ref: str
    image_name: str


@dataclass(frozen=True)
class BuildRequests:
    """Authorise, resolve, look for the image, and start or join its build."""

    manager: BuildManager
    catalog: RepoProviderCatalog
    images: ImageLookup
    image_prefix: str
    push: bool
    user_limits: UserLimits | None = None

    @staticmethod
    def authorize(identity: Identity) -> None:
        """Refuse before any upstream call when the requester may not build."""
        if not identity.can_build:
            raise Forbidden(
                f"{identity.name} may not build images here: the hub token lacks the build scope."
            )

    async def resolve(self, prefix: str, spec: str) -> BuildTarget:
        """Validate the spec and resolve its ref; input no parser accepts is a 400."""
        try:
            provider, repo = self.catalog.parse(prefix, spec)
            resolved_ref = await provider.resolve_ref(repo)
        except ValueError:
            raise InvalidSpec(f"The spec {spec[:200]!r} is not valid.") from None
        name = image_name(self.image_prefix, repo.slug, resolved_ref)
        return BuildTarget(prefix, spec, provider, repo, resolved_ref, name)

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
