"""The interface every repository provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

from ..netguard import DEFAULT_DENIED_NETWORKS, IPNetwork, parse_networks
from ..repo2docker import GIT_CONTENT_PROVIDER


@dataclass(frozen=True)
class RepoSpec:
    """A parsed and validated request for a repository at a ref.

    ``slug`` identifies the repository for image naming (stable across refs);
    ``ref`` is the ref as asked for, not yet resolved, and empty for providers
    whose specs name no ref (DOIs, HydroShare, CKAN). ``repo_url`` is what
    repo2docker is given (a clone URL, a DOI or a dataset URL). No field ever
    holds a credential.
    """

    provider: str
    spec: str
    repo_url: str
    ref: str
    slug: str


class RepoProvider(LoggingConfigurable):
    """One family of repository specs (``gh``, ``git``, ...).

    A provider is configured once and used for every request with its prefix:
    :meth:`parse` validates a spec without any I/O; :meth:`resolve_ref` asks
    upstream what the ref points to now and returns an immutable identifier
    (a full commit sha for git hosts) that becomes the image tag.

    The class attributes below describe the provider to user interfaces
    (see :meth:`describe`), in the terms BinderHub's ``api/repoproviders`` uses.
    """

    prefix: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    #: Label and placeholder of the repository field of a form.
    repo_label: ClassVar[str] = ""
    repo_placeholder: ClassVar[str] = ""
    #: Whether a form must URL-escape the repository field into the spec.
    url_encode: ClassVar[bool] = False
    #: A regular expression (JavaScript syntax) a complete spec matches.
    spec_regex: ClassVar[str] = ""
    #: A regular expression (JavaScript syntax, named groups ``repo``, ``ref``)
    #: that recognises this provider's URLs pasted into a form.
    detect_regex: ClassVar[str] = ""
    #: Whether specs name a ref at all, and the ref a form should suggest.
    ref_enabled: ClassVar[bool] = True
    default_ref: ClassVar[str] = "HEAD"

    resolve_timeout = Float(
        30.0,
        help="Seconds to wait for the upstream host when resolving a ref. Default 30.",
    ).tag(config=True)

    #: Set by :class:`~binderhub_service.providers.RepoProviderCatalog` from its
    #: ``denied_networks`` option (not an option of its own): the networks no
    #: request made for a user may reach.
    denied_networks = List(Unicode(), default_value=list(DEFAULT_DENIED_NETWORKS))

    @property
    def denied(self) -> tuple[IPNetwork, ...]:
        """``denied_networks`` parsed, for :mod:`binderhub_service.netguard`."""
        return parse_networks(self.denied_networks)

    def parse(self, spec: str) -> RepoSpec:
        raise NotImplementedError

    async def resolve_ref(self, repo: RepoSpec) -> str:
        raise NotImplementedError

    def canonical_spec(self, repo: RepoSpec) -> str:
        """The spec in one normal form (used to match ban and allow patterns).

        Equivalent specs (a ``.git`` suffix, differently escaped URLs) give the
        same canonical spec. The default is the spec as given.
        """
        return repo.spec

    def git_credentials(self, repo: RepoSpec) -> str | None:
        """The ``GIT_CREDENTIAL_ENV`` value repo2docker needs to clone ``repo``.

        ``None`` when no credentials are configured for it. The executor puts
        the value in repo2docker's environment (never on its command line); see
        :mod:`binderhub_service.git_credentials` for the format.
        """
        return None

    def build_url(self, repo: RepoSpec, resolved_ref: str) -> str:
        """What repo2docker is given to fetch ``repo`` at ``resolved_ref``.

        Git hosts take the repository URL (the ref goes in ``--ref``). Record
        providers return the URL of the exact version resolved, so that a DOI
        that moved on meanwhile cannot make the build fetch something else.
        """
        return repo.repo_url

    def repo2docker_content_providers(self) -> list[str]:
        """Dotted paths of the repo2docker content providers a build may use.

        repo2docker tries its content providers in turn on the repository
        argument; some of them contact the internet merely to inspect a URL
        (Dataverse downloads its list of installations). The executor restricts
        ``c.Repo2Docker.content_providers`` to the classes named here, imported
        from these paths, e.g. ``["repo2docker.contentproviders.Git"]`` for git
        hosts, so that a build touches nothing but the repository's own host.
        """
        return [GIT_CONTENT_PROVIDER]

    def describe(self) -> dict[str, Any]:
        """What user interfaces need to build a form for this provider.

        The shape of one entry of BinderHub's ``api/repoproviders``: ``id``,
        ``displayName``, ``repo`` (``label``, ``placeholder``, ``urlEncode``),
        ``ref`` (``enabled`` and, when enabled, ``default``), and where known
        ``spec.validateRegex`` and ``detect.regex``.
        """
        info: dict[str, Any] = {
            "id": self.prefix,
            "displayName": self.display_name,
            "repo": {
                "label": self.repo_label or self.display_name,
                "placeholder": self.repo_placeholder,
                "urlEncode": self.url_encode,
            },
            "ref": {"enabled": self.ref_enabled},
        }
        if self.ref_enabled:
            info["ref"]["default"] = self.default_ref
        if self.spec_regex:
            info["spec"] = {"validateRegex": self.spec_regex}
        if self.detect_regex:
            info["detect"] = {"regex": self.detect_regex}
        return info
