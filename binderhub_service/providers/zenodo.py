"""Zenodo records: ``zenodo/<DOI>``, e.g. ``zenodo/10.5281/zenodo.3242074``."""

from __future__ import annotations

import re
import urllib.parse

from traitlets import Unicode, default

from ..errors import RefNotFound
from .base import RepoSpec
from .doi import DOIRepoProvider
from .http import host_of, join_url

RECORD_PATH = re.compile(r"/records?/(\d+)/?$")


class ZenodoRepoProvider(DOIRepoProvider):
    """A Zenodo (or other InvenioRDM) record, resolved to the record id its DOI points to now.

    A concept DOI (all versions) resolves to the latest version's record; the
    record id is immutable and becomes the image tag.
    """

    prefix = "zenodo"
    display_name = "Zenodo DOI"
    repo_label = "Zenodo DOI"
    repo_placeholder = "example: 10.5281/zenodo.3242074"

    url = Unicode(
        "https://zenodo.org",
        help="""Base URL of the Zenodo site DOIs resolve to. Default ``https://zenodo.org``.

        Example: ``https://sandbox.zenodo.org``.
        """,
    ).tag(config=True)

    api_url = Unicode(
        help="Base URL of Zenodo's REST API. Default ``{url}/api``.",
    ).tag(config=True)

    @default("api_url")
    def _api_url_default(self) -> str:
        return join_url(self.url, "api")

    def repo2docker_content_providers(self) -> list[str]:
        return ["repo2docker.contentproviders.Zenodo"]

    def build_url(self, repo: RepoSpec, resolved_ref: str) -> str:
        return join_url(self.url, f"records/{resolved_ref}")

    def _is_record(self, url: str) -> bool:
        return host_of(url) == host_of(self.url) and bool(
            RECORD_PATH.search(urllib.parse.urlsplit(url).path)
        )

    async def resolve_ref(self, repo: RepoSpec) -> str:
        doi = repo.repo_url
        known = self.cache.get_immutable(doi.lower())
        if known is not None:
            return known
        landing = await self.resolve_doi(doi, self._is_record)
        match = RECORD_PATH.search(urllib.parse.urlsplit(landing).path)
        if host_of(landing) != host_of(self.url) or not match:
            raise self.not_here(doi, landing)
        response = await self.fetch(join_url(self.api_url, f"records/{match.group(1)}"))
        if response.code in (404, 410):
            raise RefNotFound(f"The Zenodo record for {doi} does not exist (any more).")
        if response.code != 200:
            raise self.unexpected(response, f"Zenodo record for {doi}")
        record_id = self.json_object(response).get("id")
        if not isinstance(record_id, int | str) or not str(record_id).isdigit():
            raise self.unexpected(response, f"Zenodo record for {doi}: no id")
        if doi.lower().endswith(f".{record_id}"):
            # The DOI of this very record (not a concept DOI): it never moves.
            self.cache.set_immutable(doi.lower(), str(record_id))
        return str(record_id)
