"""Dataverse datasets: ``dataverse/<DOI>``, e.g. ``dataverse/10.7910/DVN/TJCLKP``."""

from __future__ import annotations

import urllib.parse

from traitlets import List, Unicode

from ..errors import InvalidSpec, RefNotFound
from .base import RepoSpec
from .doi import DOIRepoProvider
from .http import host_of


class DataverseRepoProvider(DOIRepoProvider):
    """A dataset in any Dataverse installation, resolved to ``<id>.v<major>.<minor>``.

    The DOI leads to the installation's landing page; that installation's
    native API (``/api/datasets/:persistentId``) gives the latest published
    version.
    """

    prefix = "dataverse"
    display_name = "Dataverse DOI"
    repo_label = "Dataverse DOI"
    repo_placeholder = "example: 10.7910/DVN/TJCLKP"

    allowed_hosts = List(
        Unicode(),
        help="""Dataverse installations (host names, or ``host:port``) DOIs may lead to.

        Empty (the default) accepts any host the DOI resolver redirects to.
        Example: ``["dataverse.harvard.edu", "data.inrae.fr"]``.
        """,
    ).tag(config=True)

    def repo2docker_content_providers(self) -> list[str]:
        return ["repo2docker.contentproviders.Dataverse"]

    async def resolve_ref(self, repo: RepoSpec) -> str:
        doi = repo.repo_url
        landing = await self.resolve_doi(doi, lambda url: "persistentId=" in url)
        host = host_of(landing)
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise InvalidSpec(
                f"The DOI {doi} points to {host}, which is not a Dataverse installation "
                "this service builds from."
            )
        parts = urllib.parse.urlsplit(landing)
        persistent_id = urllib.parse.parse_qs(parts.query).get("persistentId", [f"doi:{doi}"])[0]
        api = urllib.parse.urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                "/api/datasets/:persistentId",
                urllib.parse.urlencode({"persistentId": persistent_id}),
                "",
            )
        )
        response = await self.fetch(api)
        if response.code == 404:
            raise RefNotFound(f"{host} has no published dataset with the DOI {doi}.")
        if response.code != 200:
            raise self.unexpected(response, f"Dataverse dataset {doi}")
        body = self.json_object(response)
        data = body.get("data") if body.get("status") == "OK" else None
        latest = data.get("latestVersion") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(latest, dict):
            raise self.unexpected(response, f"Dataverse dataset {doi}")
        numbers = (data.get("id"), latest.get("versionNumber"), latest.get("versionMinorNumber"))
        if not all(isinstance(n, int) for n in numbers):
            raise RefNotFound(f"The dataset {doi} on {host} has no published version.")
        return "{}.v{}.{}".format(*numbers)
