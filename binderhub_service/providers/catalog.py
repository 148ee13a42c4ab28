"""The configured set of repository providers, looked up by spec prefix."""

from __future__ import annotations

from traitlets import Dict, Type
from traitlets.config import LoggingConfigurable

from ..errors import UnknownProvider
from .base import RepoProvider, RepoSpec
from .git import GitRepoProvider


class RepoProviderCatalog(LoggingConfigurable):
    """Maps spec prefixes (``gh``, ``git``, ...) to configured provider instances."""

    provider_classes = Dict(
        value_trait=Type(klass=RepoProvider),
        default_value={"git": GitRepoProvider},
        help="""Provider class for each spec prefix, like BinderHub's ``repo_providers``.

        Remove an entry to disable that provider, or map a prefix to your own
        :class:`~binderhub_service.providers.RepoProvider` subclass.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.providers: dict[str, RepoProvider] = {
            prefix: cls(parent=self) for prefix, cls in self.provider_classes.items()
        }

    def get(self, prefix: str) -> RepoProvider:
        try:
            return self.providers[prefix]
        except KeyError:
            known = ", ".join(sorted(self.providers))
            raise UnknownProvider(
                f"Unknown repository provider {prefix[:40]!r}; this service knows: {known}."
            ) from None

    def parse(self, prefix: str, spec: str) -> tuple[RepoProvider, RepoSpec]:
        """Find the provider for ``prefix`` and let it validate ``spec``."""
        provider = self.get(prefix)
        return provider, provider.parse(spec)
