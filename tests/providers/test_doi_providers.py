"""Zenodo, Figshare, Dataverse, HydroShare and CKAN against an emulated resolver and APIs."""

from __future__ import annotations

import pytest
from repo2docker.contentproviders import Figshare, Zenodo

from binderhub_service.errors import InvalidSpec, RefNotFound, UpstreamError
from binderhub_service.providers import (
    CKANRepoProvider,
    DataverseRepoProvider,
    FigshareRepoProvider,
    HydroShareRepoProvider,
    ZenodoRepoProvider,
)
from binderhub_service.providers.git import GitRepoProvider

RESOURCE = "8f7c2f0341ef4180b0dc53f4d2dc9a6e"


def redirect(location):
    return (302, {"Location": location}, None)


@pytest.mark.parametrize(
    "spec", ["10.5281/zenodo.3242074", "doi:10.5281/zenodo.1", "https://doi.org/10.7910/DVN/TJCLKP"]
)
def test_doi_parse(spec):
    repo = ZenodoRepoProvider(denied_networks=[]).parse(spec)
    assert repo.repo_url.startswith("10.")
    assert repo.slug == f"doi.org/{repo.repo_url.lower()}"


@pytest.mark.parametrize(
    "spec",
    [
        "zenodo.3242074",
        "10.5281",
        "11.5281/x",
        "-10.5281/x",
        "10.5281/a b",
        "10.5281/\x00",
        "10.1/x",
    ],
)
def test_doi_parse_refuses(spec):
    with pytest.raises(InvalidSpec):
        ZenodoRepoProvider(denied_networks=[]).parse(spec)


async def test_zenodo_concept_doi(upstream):
    provider = ZenodoRepoProvider(
        denied_networks=[], doi_resolver_url=upstream.url + "/doi/", url=upstream.url
    )
    upstream.routes["/doi/10.5281/zenodo.100"] = redirect(f"{upstream.url}/doi/zenodo-100")
    upstream.routes["/doi/zenodo-100"] = redirect("/records/123")
    upstream.routes["/api/records/123"] = (200, {}, {"id": 123})
    repo = provider.parse("10.5281/zenodo.100")
    assert await provider.resolve_ref(repo) == "123"
    assert "/records/123" not in upstream.paths()
    assert provider.repo2docker_content_providers() == ["repo2docker.contentproviders.Zenodo"]


async def test_zenodo_unknown_doi_and_other_site(upstream):
    provider = ZenodoRepoProvider(
        denied_networks=[], doi_resolver_url=upstream.url + "/doi/", url=upstream.url
    )
    with pytest.raises(RefNotFound, match="not registered"):
        await provider.resolve_ref(provider.parse("10.5281/zenodo.9"))
    other = ZenodoRepoProvider(
        denied_networks=[], doi_resolver_url=upstream.url + "/doi/", url="https://zenodo.org"
    )
    upstream.routes["/doi/10.1234/y"] = (200, {}, "<html></html>")
    with pytest.raises(InvalidSpec, match="not to a Zenodo DOI record"):
        await other.resolve_ref(other.parse("10.1234/y"))


async def test_figshare_versioned_and_unversioned(upstream):
    provider = FigshareRepoProvider(
        denied_networks=[],
        doi_resolver_url=upstream.url + "/doi/",
        url=upstream.url,
        api_url=upstream.url + "/v2",
    )
    upstream.routes["/doi/10.6084/m9.figshare.9782777.v2"] = redirect(
        "/articles/dataset/Some_title/9782777/2"
    )
    upstream.routes["/v2/articles/9782777/versions/2"] = (200, {}, {"id": 9782777})
    assert await provider.resolve_ref(provider.parse("10.6084/m9.figshare.9782777.v2")) == (
        "9782777.v2"
    )
    # Unversioned: the DOI lands on the article; the API tells the latest version.
    upstream.routes["/doi/10.6084/m9.figshare.9782777"] = redirect(
        "/articles/dataset/Some_title/9782777"
    )
    upstream.routes["/v2/articles/9782777/versions"] = (
        200,
        {},
        [{"version": 1, "url": "..."}, {"version": 3, "url": "..."}, {"version": 2, "url": "..."}],
    )
    assert await provider.resolve_ref(provider.parse("10.6084/m9.figshare.9782777")) == (
        "9782777.v3"
    )
    assert provider.repo2docker_content_providers() == ["repo2docker.contentproviders.Figshare"]


async def test_dataverse(upstream):
    provider = DataverseRepoProvider(denied_networks=[], doi_resolver_url=upstream.url + "/doi/")
    upstream.routes["/doi/10.7910/DVN/TJCLKP"] = redirect(
        "/citation?persistentId=doi:10.7910/DVN/TJCLKP"
    )

    def dataset(request):
        assert request.query_arguments["persistentId"] == [b"doi:10.7910/DVN/TJCLKP"]
        return (
            200,
            {},
            {
                "status": "OK",
                "data": {
                    "id": 3035124,
                    "identifier": "DVN/TJCLKP",
                    "latestVersion": {"versionNumber": 3, "versionMinorNumber": 1},
                },
            },
        )

    upstream.routes["/api/datasets/:persistentId"] = dataset
    assert await provider.resolve_ref(provider.parse("10.7910/DVN/TJCLKP")) == "3035124.v3.1"
    limited = DataverseRepoProvider(
        denied_networks=[],
        doi_resolver_url=upstream.url + "/doi/",
        allowed_hosts=["dataverse.harvard.edu"],
    )
    with pytest.raises(InvalidSpec, match="not a Dataverse installation"):
        await limited.resolve_ref(limited.parse("10.7910/DVN/TJCLKP"))


@pytest.mark.parametrize(
    "spec",
    [
        RESOURCE,
        f"https%3A%2F%2Fwww.hydroshare.org%2Fresource%2F{RESOURCE}%2F",
        f"https://www.hydroshare.org/resource/{RESOURCE}",
        f"10.4211/hs.{RESOURCE}",
    ],
)
def test_hydroshare_parse(spec):
    repo = HydroShareRepoProvider(denied_networks=[]).parse(spec)
    assert repo.repo_url == f"https://www.hydroshare.org/resource/{RESOURCE}"


@pytest.mark.parametrize("spec", ["abc", RESOURCE + "0", "-" + RESOURCE, "https://x/resource/zz"])
def test_hydroshare_parse_refuses(spec):
    with pytest.raises(InvalidSpec):
        HydroShareRepoProvider(denied_networks=[]).parse(spec)


async def test_hydroshare_resolve(upstream):
    provider = HydroShareRepoProvider(denied_networks=[], url=upstream.url)
    upstream.routes[f"/hsapi/resource/{RESOURCE}/scimeta/elements/"] = (
        200,
        {},
        {
            "dates": [
                {"type": "created", "start_date": "2019-01-01T00:00:00Z"},
                {"type": "modified", "start_date": "2021-02-01T21:43:29.497811Z"},
            ]
        },
    )
    assert await provider.resolve_ref(provider.parse(RESOURCE)) == f"{RESOURCE}.v1612215809"
    with pytest.raises(RefNotFound):
        await provider.resolve_ref(provider.parse("0" * 32))


def ckan_escaped(url):
    from urllib.parse import quote

    return quote(url, safe="")


async def test_ckan_current_and_activity(upstream):
    provider = CKANRepoProvider(denied_networks=[], allowed_schemes=["http", "https"])
    upstream.routes["/site/api/3/action/package_show"] = (
        200,
        {},
        {
            "success": True,
            "result": {"name": "sample", "metadata_modified": "2021-01-05T14:34:09.123456"},
        },
    )
    repo = provider.parse(ckan_escaped(f"{upstream.url}/site/dataset/sample"))
    assert repo.slug == f"{upstream.host}/site/dataset/sample"
    assert await provider.resolve_ref(repo) == "sample.v1609857249"

    def activity(request):
        assert request.query_arguments == {"id": [b"act-1"], "object_type": [b"package"]}
        return (
            200,
            {},
            {
                "success": True,
                "result": {"name": "sample", "metadata_modified": "2020-01-01T00:00:00"},
            },
        )

    upstream.routes["/site/api/3/action/activity_data_show"] = activity
    for url in (
        f"{upstream.url}/site/dataset/sample/history/act-1",
        f"{upstream.url}/site/dataset/sample?activity_id=act-1",
    ):
        assert await provider.resolve_ref(provider.parse(ckan_escaped(url))) == "sample.v1577836800"
    assert provider.repo2docker_content_providers() == ["repo2docker.contentproviders.CKAN"]


@pytest.mark.parametrize(
    "url",
    [
        "http://ckan.example.org/dataset/x",
        "https://ckan.example.org/group/x",
        "https://ckan.example.org/dataset/x/resource/y",
        "https://u:p@ckan.example.org/dataset/x",
        "https://ckan.example.org/dataset/x/history/bad%20id",
        "ext::sh -c touch% /tmp/pwned",
    ],
)
def test_ckan_parse_refuses(url):
    with pytest.raises(InvalidSpec):
        CKANRepoProvider(denied_networks=[]).parse(ckan_escaped(url))


async def test_data_providers_down_and_slow(upstream, closed_port_url):
    down = ZenodoRepoProvider(
        denied_networks=[], doi_resolver_url=closed_port_url + "/", resolve_timeout=2
    )
    with pytest.raises(UpstreamError, match=r"Could not connect to 127\.0\.0\.1"):
        await down.resolve_ref(down.parse("10.5281/zenodo.1"))

    async def slow(request):
        await upstream.hang.wait()

    upstream.routes["/hsapi/resource/" + RESOURCE + "/scimeta/elements/"] = slow
    provider = HydroShareRepoProvider(denied_networks=[], url=upstream.url, resolve_timeout=0.2)
    with pytest.raises(UpstreamError, match=r"did not answer within 0\.2 seconds"):
        await provider.resolve_ref(provider.parse(RESOURCE))


async def test_versioned_dois_are_resolved_once(upstream):
    zenodo = ZenodoRepoProvider(
        denied_networks=[], doi_resolver_url=upstream.url + "/doi/", url=upstream.url
    )
    upstream.routes["/doi/10.5281/zenodo.123"] = redirect("/records/123")
    upstream.routes["/doi/10.5281/zenodo.100"] = redirect("/records/123")
    upstream.routes["/api/records/123"] = (200, {}, {"id": 123})
    for _ in range(2):
        assert await zenodo.resolve_ref(zenodo.parse("10.5281/zenodo.123")) == "123"
    assert len(upstream.requests) == 2
    # A concept DOI may move to a new version: it is asked every time.
    for _ in range(2):
        assert await zenodo.resolve_ref(zenodo.parse("10.5281/zenodo.100")) == "123"
    assert len(upstream.requests) == 6

    figshare = FigshareRepoProvider(
        denied_networks=[],
        doi_resolver_url=upstream.url + "/doi/",
        url=upstream.url,
        api_url=upstream.url + "/v2",
    )
    upstream.routes["/doi/10.6084/m9.figshare.5.v1"] = redirect("/articles/dataset/t/5/1")
    upstream.routes["/v2/articles/5/versions/1"] = (200, {}, {"id": 5})
    upstream.requests.clear()
    for _ in range(2):
        assert await figshare.resolve_ref(figshare.parse("10.6084/m9.figshare.5.v1")) == "5.v1"
    assert len(upstream.requests) == 2


def test_builds_fetch_the_resolved_version():
    """repo2docker is given the exact record version resolved, and recognises it offline."""
    zenodo = ZenodoRepoProvider(denied_networks=[])
    zenodo_url = zenodo.build_url(zenodo.parse("10.5281/zenodo.3242073"), "3242074")
    assert zenodo_url == "https://zenodo.org/records/3242074"
    assert Zenodo().detect(zenodo_url)["record"] == "3242074"

    figshare = FigshareRepoProvider(denied_networks=[])
    figshare_url = figshare.build_url(figshare.parse("10.6084/m9.figshare.9782777"), "9782777.v3")
    assert figshare_url == "https://figshare.com/articles/_/9782777/3"
    detected = Figshare().detect(figshare_url)
    assert (detected["article"], detected["version"]) == ("9782777", "3")

    git = GitRepoProvider(denied_networks=[])
    repo = git.parse("https%3A%2F%2Fexample.org%2Frepo.git/main")
    assert git.build_url(repo, "a" * 40) == "https://example.org/repo.git"
