"""CKAN datasets: ``ckan/<url-escaped dataset URL>``.

The URL may name a past state of the dataset by an activity id, as CKAN's
own pages do: ``.../dataset/<name>/history/<activity id>`` or
``.../dataset/<name>?activity_id=<activity id>``.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse

from traitlets import List, Unicode

from ..errors import InvalidSpec, RefNotFound, UpstreamError
from ..netguard import DeniedNetwork, check_url
from .base import RepoSpec
from .http import HTTPRepoProvider, host_of
from .hydroshare import parse_timestamp
from .validation import check_repo_url

NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
ACTIVITY = re.compile(r"^[A-Za-z0-9-]{1,64}$")
#: The most resources a dataset may list (each one's host is checked).
MAX_RESOURCES = 500


def split_dataset_url(url: str) -> tuple[str, str, str | None]:
    """The API base, dataset name and activity id (if any) of a CKAN dataset URL."""
    parts = urllib.parse.urlsplit(url)
    site, sep, rest = parts.path.partition("/dataset/")
    segments = rest.strip("/").split("/") if sep else []
    if not segments or not NAME.match(segments[0]):
        raise InvalidSpec("A CKAN URL must name a dataset: https://<site>/dataset/<name>.")
    activity = None
    if len(segments) == 3 and segments[1] == "history":
        activity = segments[2]
    elif len(segments) != 1:
        raise InvalidSpec("A CKAN dataset URL is .../dataset/<name>[/history/<activity id>].")
    query = urllib.parse.parse_qs(parts.query)
    if "activity_id" in query and activity is None:
        activity = query["activity_id"][0]
    if activity is not None and not ACTIVITY.match(activity):
        raise InvalidSpec(f"{activity!r} is not a CKAN activity id.")
    api = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"{site}/api/3/action/", "", ""))
    return api, segments[0], activity


class CKANRepoProvider(HTTPRepoProvider):
    """A dataset on any CKAN site, resolved to ``<name>.v<time of last modification>``.

    With an activity id the time is the dataset's at that activity
    (``activity_data_show``); without one, the current one (``package_show``).
    """

    prefix = "ckan"
    display_name = "CKAN dataset"
    repo_label = "CKAN dataset URL"
    repo_placeholder = "https://demo.ckan.org/dataset/sample-dataset-1"
    url_encode = True
    ref_enabled = False

    allowed_schemes = List(
        Unicode(),
        ["https"],
        help="""URL schemes accepted for CKAN sites. Default ``["https"]``.

        Example: ``["https", "http"]`` to accept plain-http sites too.
        """,
    ).tag(config=True)

    allowed_hosts = List(
        Unicode(),
        help="""CKAN sites (host names, or ``host:port``) datasets may come from.

        Empty (the default) accepts any host outside
        ``RepoProviderCatalog.denied_networks``; the resource URLs a dataset
        lists are checked against those networks too. Example:
        ``["demo.ckan.org", "data.gov.uk"]``.
        """,
    ).tag(config=True)

    def repo2docker_content_providers(self) -> list[str]:
        return ["repo2docker.contentproviders.CKAN"]

    def parse(self, spec: str) -> RepoSpec:
        url = check_repo_url(urllib.parse.unquote(spec), self.allowed_schemes)
        if self.allowed_hosts and host_of(url) not in self.allowed_hosts:
            raise InvalidSpec(f"{host_of(url)} is not a CKAN site this service builds from.")
        if urllib.parse.urlsplit(url).username:
            raise InvalidSpec("A CKAN URL must not contain a user name or password.")
        _, name, _ = split_dataset_url(url)
        parts = urllib.parse.urlsplit(url)
        site = parts.path.partition("/dataset/")[0]
        return RepoSpec(
            provider=self.prefix,
            spec=spec,
            repo_url=url,
            ref="",
            slug=f"{parts.netloc}{site}/dataset/{name}".lower(),
        )

    def canonical_spec(self, repo: RepoSpec) -> str:
        return urllib.parse.quote(repo.repo_url, safe="")

    async def resolve_ref(self, repo: RepoSpec) -> str:
        api, name, activity = split_dataset_url(repo.repo_url)
        if activity is None:
            query = urllib.parse.urlencode({"id": name})
            url = f"{api}package_show?{query}"
        else:
            query = urllib.parse.urlencode({"id": activity, "object_type": "package"})
            url = f"{api}activity_data_show?{query}"
        response = await self.fetch(url)
        if response.code in (403, 404):
            what = f"activity {activity} of the dataset" if activity else "the dataset"
            raise RefNotFound(f"{host_of(api)} has no public {what} {name!r}.")
        if response.code != 200:
            raise self.unexpected(response, f"CKAN dataset {name}")
        body = self.json_object(response)
        result = body.get("result") if body.get("success") else None
        if not isinstance(result, dict):
            raise self.unexpected(response, f"CKAN dataset {name}")
        if activity is not None and name not in (result.get("name"), result.get("id")):
            raise RefNotFound(f"The activity {activity} is not one of the dataset {name!r}.")
        await self._check_resources(result, name)
        try:
            return f"{name}.v{parse_timestamp(result.get('metadata_modified'))}"
        except ValueError:
            raise self.unexpected(response, f"CKAN dataset {name}: no date") from None

    async def _check_resources(self, dataset: dict, name: str) -> None:
        """Refuse a dataset listing a resource URL the build could not be allowed to fetch.

        repo2docker downloads every resource a dataset lists: each URL must be
        http(s) and its host outside the denied networks, as for any request.
        """
        resources = dataset.get("resources") or []
        if not isinstance(resources, list) or len(resources) > MAX_RESOURCES:
            raise InvalidSpec(
                f"The CKAN dataset {name!r} lists more than {MAX_RESOURCES} resources "
                "or lists them in an unknown form; it cannot be built here."
            )
        urls: list[str] = []
        for resource in resources:
            url = resource.get("url") if isinstance(resource, dict) else None
            if not url:
                continue
            urls.append(url)
            if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
                raise InvalidSpec(
                    f"The CKAN dataset {name!r} lists a resource that is not an http(s) URL."
                )
        try:
            await asyncio.gather(*(check_url(url, self.denied) for url in urls))
        except (DeniedNetwork, InvalidSpec, UpstreamError):
            raise InvalidSpec(
                f"The CKAN dataset {name!r} lists a resource on a host this service "
                "cannot fetch from."
            ) from None
