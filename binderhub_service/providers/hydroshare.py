"""HydroShare resources: ``hydroshare/<resource id, URL or DOI>``."""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime

from traitlets import Unicode, default

from ..errors import InvalidSpec, RefNotFound
from .base import RepoSpec
from .http import HTTPRepoProvider, join_url
from .validation import check_text

RESOURCE_ID = re.compile(r"^[0-9a-f]{32}$")
# https://www.hydroshare.org/resource/<id>/ or the DOI 10.4211/hs.<id>
RESOURCE_IN_URL = re.compile(r"^https?://[^/]+/resource/([0-9a-f]{32})/?$")
RESOURCE_IN_DOI = re.compile(r"^(?:doi:|https?://doi\.org/)?10\.4211/hs\.([0-9a-f]{32})$")


def parse_timestamp(value: object) -> int:
    """Seconds since the epoch of an ISO 8601 timestamp (UTC when no zone is given)."""
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class HydroShareRepoProvider(HTTPRepoProvider):
    """A HydroShare resource, resolved to ``<resource id>.v<last modified time>``."""

    prefix = "hydroshare"
    display_name = "HydroShare resource"
    repo_label = "HydroShare resource id, URL or DOI"
    repo_placeholder = (
        "example: https://www.hydroshare.org/resource/8f7c2f0341ef4180b0dc53f4d2dc9a6e"
    )
    url_encode = True
    ref_enabled = False

    url = Unicode(
        "https://www.hydroshare.org",
        help="Base URL of HydroShare. Default ``https://www.hydroshare.org``.",
    ).tag(config=True)

    api_url = Unicode(
        help="Base URL of HydroShare's REST API. Default ``{url}/hsapi``.",
    ).tag(config=True)

    @default("api_url")
    def _api_url_default(self) -> str:
        return join_url(self.url, "hsapi")

    def repo2docker_content_providers(self) -> list[str]:
        return ["repo2docker.contentproviders.Hydroshare"]

    def parse(self, spec: str) -> RepoSpec:
        text = urllib.parse.unquote(spec)
        check_text(text, "HydroShare resource", 512)
        text = text.rstrip("/")
        for pattern in (RESOURCE_ID, RESOURCE_IN_URL, RESOURCE_IN_DOI):
            match = pattern.match(text)
            if match:
                resource = match.group(match.lastindex or 0)
                break
        else:
            raise InvalidSpec(
                "A HydroShare spec is a resource id (32 hexadecimal digits), its URL "
                "or its DOI (10.4211/hs.<id>)."
            )
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=join_url(self.url, f"resource/{resource}"),
            ref="",
            slug=f"hydroshare/{resource}",
        )

    def canonical_spec(self, repo: RepoSpec) -> str:
        return repo.slug.rsplit("/", 1)[1]

    async def resolve_ref(self, repo: RepoSpec) -> str:
        resource = self.canonical_spec(repo)
        url = join_url(self.api_url, f"resource/{resource}/scimeta/elements/")
        response = await self.fetch(url)
        if response.code in (404, 410):
            raise RefNotFound(f"HydroShare has no public resource {resource}.")
        if response.code != 200:
            raise self.unexpected(response, f"HydroShare resource {resource}")
        dates = self.json_object(response).get("dates")
        modified = [
            d.get("start_date")
            for d in dates or ()
            if isinstance(d, dict) and d.get("type") == "modified"
        ]
        try:
            return f"{resource}.v{parse_timestamp(modified[0])}"
        except (IndexError, ValueError):
            raise self.unexpected(response, f"HydroShare resource {resource}: no date") from None
