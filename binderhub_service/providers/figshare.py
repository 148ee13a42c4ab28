"""Figshare articles: ``figshare/<DOI>``, e.g. ``figshare/10.6084/m9.figshare.9782777.v1``."""

from __future__ import annotations

import re
import urllib.parse

from traitlets import Unicode

from ..errors import RefNotFound
from .base import RepoSpec
from .doi import DOIRepoProvider
from .http import join_url

# figshare.com/articles/[<type>/]<title>/<id>[/<version>]
ARTICLE_PATH = re.compile(r"/articles/(?:[^/]+/){1,2}(\d+)(?:/(\d+))?/?$")


class FigshareRepoProvider(DOIRepoProvider):
    """A Figshare article at one version, resolved to ``<article id>.v<version>``.

    A DOI without a version (``10.6084/m9.figshare.9782777``) resolves to the
    article's latest version, asked from Figshare's API.
    """

    prefix = "figshare"
    display_name = "Figshare DOI"
    repo_label = "Figshare DOI"
    repo_placeholder = "example: 10.6084/m9.figshare.9782777.v1"

    url = Unicode(
        "https://figshare.com",
        help="""Base URL of the Figshare site DOIs resolve to. Default ``https://figshare.com``.

        Landing pages on its subdomains (institutional portals) are accepted too.
        """,
    ).tag(config=True)

    api_url = Unicode(
        "https://api.figshare.com/v2",
        help="Base URL of Figshare's API. Default ``https://api.figshare.com/v2``.",
    ).tag(config=True)

    def repo2docker_content_providers(self) -> list[str]:
        return ["repo2docker.contentproviders.Figshare"]

    def build_url(self, repo: RepoSpec, resolved_ref: str) -> str:
        # repo2docker reads the article id and version from the URL's path; the
        # title segment is not checked, and without a version it takes version 1.
        article, _, version = resolved_ref.partition(".v")
        return join_url(self.url, f"articles/_/{article}/{version}")

    def _on_site(self, url: str) -> bool:
        site = urllib.parse.urlsplit(self.url)
        there = urllib.parse.urlsplit(url)
        if site.port != there.port or not there.hostname or not site.hostname:
            return False
        return there.hostname == site.hostname or there.hostname.endswith("." + site.hostname)

    def _is_article(self, url: str) -> bool:
        return self._on_site(url) and bool(ARTICLE_PATH.search(urllib.parse.urlsplit(url).path))

    async def resolve_ref(self, repo: RepoSpec) -> str:
        doi = repo.repo_url
        known = self.cache.get_immutable(doi.lower())
        if known is not None:
            return known
        landing = await self.resolve_doi(doi, self._is_article)
        match = ARTICLE_PATH.search(urllib.parse.urlsplit(landing).path)
        if not self._on_site(landing) or not match:
            raise self.not_here(doi, landing)
        article, version = match.group(1), match.group(2)
        if version:
            response = await self.fetch(
                join_url(self.api_url, f"articles/{article}/versions/{version}")
            )
            self._check_found(response.code, doi)
            if response.code != 200:
                raise self.unexpected(response, f"Figshare article {article} v{version}")
            self.cache.set_immutable(doi.lower(), f"{article}.v{version}")
            return f"{article}.v{version}"
        response = await self.fetch(join_url(self.api_url, f"articles/{article}/versions"))
        self._check_found(response.code, doi)
        versions = self.json_body(response) if response.code == 200 else None
        numbers = [
            v["version"]
            for v in versions or ()
            if isinstance(v, dict) and isinstance(v.get("version"), int)
        ]
        if not isinstance(versions, list) or not numbers:
            raise self.unexpected(response, f"versions of Figshare article {article}")
        return f"{article}.v{max(numbers)}"

    @staticmethod
    def _check_found(code: int, doi: str) -> None:
        if code == 404:
            raise RefNotFound(f"The Figshare article for {doi} does not exist (any more).")
