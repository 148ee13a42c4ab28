"""The configured set of repository providers, looked up by spec prefix, and the
operator's policy on which specs may be built and with which options."""

from __future__ import annotations

import re
from typing import Any

from traitlets import Dict, List, Type, Unicode, observe, validate
from traitlets.config import LoggingConfigurable

from ..errors import Forbidden, UnknownProvider
from ..netguard import DEFAULT_DENIED_NETWORKS, IPNetwork, parse_networks
from .base import RepoProvider, RepoSpec
from .ckan import CKANRepoProvider
from .dataverse import DataverseRepoProvider
from .figshare import FigshareRepoProvider
from .gist import GistRepoProvider
from .git import GitRepoProvider
from .github import GitHubRepoProvider
from .gitlab import GitLabRepoProvider
from .hydroshare import HydroShareRepoProvider
from .zenodo import ZenodoRepoProvider

DEFAULT_PROVIDERS: dict[str, type[RepoProvider]] = {
    "gh": GitHubRepoProvider,
    "gist": GistRepoProvider,
    "git": GitRepoProvider,
    "gl": GitLabRepoProvider,
    "zenodo": ZenodoRepoProvider,
    "figshare": FigshareRepoProvider,
    "hydroshare": HydroShareRepoProvider,
    "dataverse": DataverseRepoProvider,
    "ckan": CKANRepoProvider,
}


def _compile(patterns: list[str], name: str) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            raise ValueError(f"{name}: {pattern!r} is not a regular expression: {error}") from None
    return compiled


class RepoProviderCatalog(LoggingConfigurable):
    """Maps spec prefixes (``gh``, ``git``, ...) to configured provider instances.

    It also applies the operator's policy before anything is resolved:
    ``banned_specs`` and ``allowed_specs`` decide which specs may be built at
    all.
    Patterns are case-insensitive regular expressions matched (``re.match``,
    so anchored at the start) against ``<prefix>/<spec>``, e.g.
    ``gh/binder-examples/.*``. A spec is banned when either the spec as
    requested or its canonical form (see :meth:`RepoProvider.canonical_spec`:
    one spelling of the repository's identity, without port, userinfo,
    trailing dots or doubled slashes) matches a banned pattern; it is allowed
    only when its canonical form matches an allowed pattern.
    """

    provider_classes = Dict(
        value_trait=Type(klass=RepoProvider),
        default_value=DEFAULT_PROVIDERS,
        help="""Provider class for each spec prefix, like BinderHub's ``repo_providers``.

        Default: ``gh``, ``gist``, ``git``, ``gl``, ``zenodo``, ``figshare``,
        ``hydroshare``, ``dataverse`` and ``ckan``. Assign a dict without an
        entry to disable that provider, e.g. ``{"gh": GitHubRepoProvider}`` for
        GitHub only, or map a prefix to your own
        :class:`~binderhub_service.providers.RepoProvider` subclass.
        """,
    ).tag(config=True)

    banned_specs = List(
        Unicode(),
        help="""Specs that are never built: regular expressions matched against ``<prefix>/<spec>``.

        Case-insensitive, anchored at the start. Example:
        ``["gh/evil-org/.*", "git/.*"]``. A banned spec is refused with 403 and
        ``banned_spec_message`` before any upstream host is contacted. Default: none.
        """,
    ).tag(config=True)

    allowed_specs = List(
        Unicode(),
        help="""If not empty, only specs matching one of these regular expressions are built.

        Matched against the canonical form of the spec only, so that a
        differently spelled URL cannot pass for an allowed one;
        ``banned_specs`` still applies. Example:
        ``["gh/my-org/.*", "zenodo/.*"]``. Default: empty, everything not banned is allowed.
        """,
    ).tag(config=True)

    banned_spec_message = Unicode(
        "This repository cannot be built by this service.",
        help="""Message shown to users whose spec is banned or not allowed.

        Default: "This repository cannot be built by this service.". Example:
        "Builds are limited to repositories of our organisation; see https://example.org/help".
        """,
    ).tag(config=True)

    denied_networks = List(
        Unicode(),
        default_value=list(DEFAULT_DENIED_NETWORKS),
        help="""Networks (CIDR) no request made for a user may reach, checked after DNS resolution.

        Applies to every provider API call and each of its redirects, to
        ``git ls-remote`` and to the service's clones: a host is refused when
        any address it resolves to (or an IP literal in any spelling, such as
        ``2130706433`` or ``[::ffff:127.0.0.1]``) lies in one of these networks.
        Default: loopback, "this network" (0.0.0.0/8), private (RFC 1918),
        carrier-grade NAT (100.64.0.0/10), link-local (169.254.0.0/16, with
        cloud metadata at 169.254.169.254, and fe80::/10), unique-local
        (fc00::/7), multicast, reserved and unspecified addresses. IPv6 forms
        that embed an IPv4 address are checked as that address. Example: add
        ``"203.0.113.0/24"`` to the default; ``[]`` allows every network, for a
        service and its repositories on one machine (tests, local trials).
        """,
    ).tag(config=True)

    @validate("banned_specs", "allowed_specs")
    def _valid_patterns(self, proposal: Any) -> list[str]:
        _compile(proposal["value"], proposal["trait"].name)
        return proposal["value"]

    @validate("denied_networks")
    def _valid_denied_networks(self, proposal: Any) -> list[str]:
        parse_networks(proposal["value"])
        return proposal["value"]

    @observe("denied_networks")
    def _pass_denied_networks(self, change: Any) -> None:
        for provider in getattr(self, "providers", {}).values():
            provider.denied_networks = change["new"]

    @property
    def denied(self) -> tuple[IPNetwork, ...]:
        """``denied_networks`` parsed, for :func:`binderhub_service.netguard.check_url`."""
        return parse_networks(self.denied_networks)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.providers: dict[str, RepoProvider] = {
            prefix: cls(parent=self, denied_networks=self.denied_networks)
            for prefix, cls in self.provider_classes.items()
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
        """Find the provider for ``prefix``, let it validate ``spec`` and apply the policy.

        Raises :class:`~binderhub_service.errors.Forbidden` for a banned (or
        not allowed) spec. Nothing here contacts an upstream host.
        """
        provider = self.get(prefix)
        repo = provider.parse(spec)
        self.check_allowed(prefix, repo)
        return provider, repo

    def check_allowed(self, prefix: str, repo: RepoSpec) -> None:
        """Raise :class:`~binderhub_service.errors.Forbidden` unless the policy allows ``repo``."""
        forms = self._forms(prefix, repo)
        canonical = forms[-1]
        banned = _compile(self.banned_specs, "banned_specs")
        allowed = _compile(self.allowed_specs, "allowed_specs")
        refused = any(p.match(form) for p in banned for form in forms) or (
            bool(allowed) and not any(p.match(canonical) for p in allowed)
        )
        if refused:
            self.log.info("Refusing spec %s/%s by policy", prefix, repo.spec)
            raise Forbidden(self.banned_spec_message)

    def describe(self) -> list[dict[str, Any]]:
        """What ``api/repoproviders`` serves: one :meth:`RepoProvider.describe` per provider."""
        return [provider.describe() for provider in self.providers.values()]

    def _forms(self, prefix: str, repo: RepoSpec) -> tuple[str, ...]:
        return (f"{prefix}/{repo.spec}", f"{prefix}/{self.get(prefix).canonical_spec(repo)}")
