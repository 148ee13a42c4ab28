"""What the DOI-based providers (Zenodo, Figshare, Dataverse) share: DOI specs and resolution.

A DOI is resolved by asking the resolver (``https://doi.org/`` by default)
and following its redirects, hop by hop, to the landing page of the record in
its repository. Only ``http`` and ``https`` redirects are followed, and at most
:data:`MAX_HOPS` of them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from traitlets import Unicode

from ..errors import InvalidSpec, RefNotFound
from .base import RepoSpec
from .cache import ResolutionCache
from .http import REDIRECT_CODES, HTTPRepoProvider, host_of, redirect_target
from .validation import check_text

MAX_HOPS = 10
# Crossref's recommended DOI characters; a prefix is "10." and four or more digits.
DOI = re.compile(r"^10\.\d{4,9}/[-._;()/:A-Za-z0-9]+$")


def check_doi(text: str) -> str:
    """Validate a DOI, given bare or as ``doi:...`` or a doi.org URL; returns it bare."""
    check_text(text, "DOI", 512)
    for prefix in ("doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    if not DOI.match(text):
        raise InvalidSpec(f"{text!r} is not a DOI; a DOI looks like 10.5281/zenodo.3242074.")
    return text


class DOIRepoProvider(HTTPRepoProvider):
    """A provider whose specs are DOIs, resolved through a DOI resolver.

    Subclasses implement :meth:`resolve_ref` with :meth:`resolve_doi`; there is
    no ref in the spec: what the DOI points to now is the version that is built.
    """

    ref_enabled = False
    spec_regex = r"^10\.\d+/.+$"

    doi_resolver_url = Unicode(
        "https://doi.org/",
        help="""URL of the DOI resolver; the DOI is appended to it. Default ``https://doi.org/``.

        Example: ``https://dx.doi.org/``.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        #: Answers for DOIs that name one version, which never change.
        self.cache = ResolutionCache()

    def parse(self, spec: str) -> RepoSpec:
        doi = check_doi(spec)
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=doi,
            ref="",
            slug=f"doi.org/{doi.lower()}",
        )

    def canonical_spec(self, repo: RepoSpec) -> str:
        return repo.repo_url

    async def resolve_doi(self, doi: str, arrived: Callable[[str], bool]) -> str:
        """Follow the resolver's redirects for ``doi`` to the record's landing URL.

        Stops at the first URL ``arrived`` accepts, without fetching it, or at
        the first answer that is not a redirect.
        """
        url = self.doi_resolver_url.rstrip("/") + "/" + urllib.parse.quote(doi, safe="/:;()")
        for hop in range(MAX_HOPS):
            response = await self.fetch(
                url, headers={"Accept": "text/html"}, follow_redirects=False
            )
            if response.code in REDIRECT_CODES:
                location = response.headers.get("Location")
                if not location:
                    raise self.unexpected(response, f"redirect without Location for {doi}")
                target = redirect_target(url, location)
                if target is None:
                    raise self.unexpected(response, f"redirect of {doi} to a non-HTTP URL")
                url = target
                if arrived(url):
                    return url
                continue
            if response.code in (404, 410):
                where = "registered" if hop == 0 else f"available at {host_of(url)}"
                raise RefNotFound(f"The DOI {doi} is not {where}.")
            if response.code == 200:
                return url
            raise self.unexpected(response, f"resolving DOI {doi}")
        raise RefNotFound(f"The DOI {doi} redirects too many times to be resolved.")

    def not_here(self, doi: str, url: str) -> InvalidSpec:
        """The error for a DOI that resolves to another repository than this provider's."""
        return InvalidSpec(
            f"The DOI {doi} points to {host_of(url)}, not to a {self.display_name} record."
        )
