"""Every request made for a user is checked against the denied networks, on every hop.

Loopback listeners stand in for internal services: 127.0.0.2 plays an internal
host (denied in these tests) while the emulated public hosts listen on
127.0.0.1. Nothing here talks to anything but loopback; private addresses in
specs are refused before any connection, which a git command that does not
exist proves (running it would fail differently).
"""

from __future__ import annotations

import asyncio
import tracemalloc
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from binderhub_service.errors import InvalidSpec, RefNotFound, UpstreamError
from binderhub_service.netguard import DeniedNetwork, git_network_options, parse_networks
from binderhub_service.providers import (
    CKANRepoProvider,
    GitHubRepoProvider,
    GitRepoProvider,
    RepoProviderCatalog,
    ZenodoRepoProvider,
)
from tests.fake_git import serve_refs

INTERNAL = ["127.0.0.2/32"]


@dataclass
class Listener:
    """A TCP listener that records the connections it accepts (their first bytes) and answers
    nothing."""

    host: str
    port: int = 0
    connections: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)


async def listen(host: str) -> tuple[asyncio.Server, Listener]:
    listener = Listener(host)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.connections.append(host)
        try:
            async with asyncio.timeout(2):
                listener.received.append(await reader.readuntil(b"\r\n\r\n"))
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        writer.close()

    server = await asyncio.start_server(accept, host, 0)
    listener.port = server.sockets[0].getsockname()[1]
    return server, listener


@pytest.fixture
async def internal() -> AsyncIterator[Listener]:
    """A stand-in internal service on 127.0.0.2."""
    server, listener = await listen("127.0.0.2")
    yield listener
    server.close()
    await server.wait_closed()


@pytest.fixture
async def loopback_service() -> AsyncIterator[Listener]:
    """A stand-in service on 127.0.0.1, which the default denied networks cover."""
    server, listener = await listen("127.0.0.1")
    yield listener
    server.close()
    await server.wait_closed()


def git_spec(url: str, ref: str = "main") -> str:
    return f"{urllib.parse.quote(url, safe='')}/{ref}"


LOOPBACK_SPELLINGS = [
    "git://127.0.0.1:{port}/repo.git",
    "git://2130706433:{port}/repo.git",
    "git://0x7f.1:{port}/repo.git",
    "git://0177.0.0.1:{port}/repo.git",
    "git://127.1:{port}/repo.git",
    "git://127.0.0.1.:{port}/repo.git",
    "git://localhost:{port}/repo.git",
    "git://[::ffff:127.0.0.1]:{port}/repo.git",
    "http://0:{port}/repo.git",
    "https://someone@127.0.0.1:{port}/repo.git",
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
async def test_git_to_loopback_is_refused_with_no_connection(loopback_service, template):
    provider = GitRepoProvider(allowed_schemes=["https", "http", "git"])
    repo = provider.parse(git_spec(template.format(port=loopback_service.port)))
    with pytest.raises(DeniedNetwork) as info:
        await provider.resolve_ref(repo)
    assert info.value.status_code == 403
    assert "127.0.0.1" not in info.value.message or "127.0.0.1" in template
    await asyncio.sleep(0.05)
    assert loopback_service.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "git://10.0.0.1/repo.git",
        "git://167772161/repo.git",
        "https://192.168.1.1/repo.git",
        "https://172.16.0.1:443/repo.git",
        "https://169.254.169.254/latest/meta-data",
        "https://0xa9.0xfe.0xa9.0xfe/repo.git",
        "https://100.64.0.1/repo.git",
        "https://[fd00::1]/repo.git",
        "https://[fe80::1]/repo.git",
        "https://[::ffff:10.0.0.1]/repo.git",
    ],
)
async def test_git_to_private_addresses_is_refused_before_running_git(url):
    provider = GitRepoProvider(git_executable="/nonexistent/git")
    with pytest.raises(DeniedNetwork):
        await provider.resolve_ref(provider.parse(git_spec(url)))


def test_git_schemes_that_cannot_be_checked_are_never_allowed():
    for scheme in ("ssh", "ext", "git+ssh"):
        with pytest.raises(ValueError, match="cannot be allowed"):
            GitRepoProvider(allowed_schemes=["https", scheme])
    with pytest.raises(InvalidSpec):
        GitRepoProvider().parse(git_spec("ssh://git@example.org/repo.git"))


def test_catalog_passes_its_denied_networks_to_providers():
    catalog = RepoProviderCatalog(denied_networks=["203.0.113.0/24"])
    assert {tuple(p.denied_networks) for p in catalog.providers.values()} == {("203.0.113.0/24",)}
    catalog.denied_networks = []
    assert catalog.get("ckan").denied_networks == [] and catalog.denied == ()
    assert "127.0.0.0/8" in RepoProviderCatalog().get("git").denied_networks
    with pytest.raises(ValueError, match="CIDR"):
        RepoProviderCatalog(denied_networks=["not-a-network"])


# CKAN and DOI providers: the emulated site is public (127.0.0.1), 127.0.0.2 internal.


def ckan_dataset(resources: list[dict]) -> tuple[int, dict, dict]:
    return (
        200,
        {},
        {
            "success": True,
            "result": {
                "name": "sample",
                "metadata_modified": "2021-01-05T14:34:09",
                "resources": resources,
            },
        },
    )


def ckan(upstream) -> tuple[CKANRepoProvider, object]:
    provider = CKANRepoProvider(denied_networks=INTERNAL, allowed_schemes=["http", "https"])
    escaped = urllib.parse.quote(f"{upstream.url}/dataset/sample", safe="")
    return provider, provider.parse(escaped)


async def test_ckan_listing_an_internal_resource_is_refused(upstream, internal):
    provider, repo = ckan(upstream)
    upstream.routes["/api/3/action/package_show"] = ckan_dataset(
        [{"url": f"{upstream.url}/data.csv"}]
    )
    assert await provider.resolve_ref(repo) == "sample.v1609857249"
    for url in (
        f"http://127.0.0.2:{internal.port}/runtime.txt?f=/runtime.txt",
        f"http://2130706434:{internal.port}/x",
        "file:///etc/passwd",
    ):
        upstream.routes["/api/3/action/package_show"] = ckan_dataset(
            [{"url": f"{upstream.url}/data.csv"}, {"url": url}]
        )
        with pytest.raises(InvalidSpec) as info:
            await provider.resolve_ref(repo)
        assert "127.0.0.2" not in info.value.message
        assert str(internal.port) not in info.value.message
    assert internal.connections == []


async def test_ckan_redirect_to_an_internal_host_is_refused(upstream, internal):
    provider, repo = ckan(upstream)
    upstream.routes["/api/3/action/package_show"] = (
        302,
        {"Location": f"http://127.0.0.2:{internal.port}/api/3/action/package_show?id=sample"},
        None,
    )
    with pytest.raises(DeniedNetwork) as info:
        await provider.resolve_ref(repo)
    assert "127.0.0.2" not in info.value.message
    assert internal.connections == []


async def test_ckan_site_itself_in_a_denied_network(upstream):
    provider = CKANRepoProvider(allowed_schemes=["http"])
    repo = provider.parse(urllib.parse.quote(f"{upstream.url}/dataset/sample", safe=""))
    with pytest.raises(DeniedNetwork):
        await provider.resolve_ref(repo)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.org/x", "http://[::1"],
)
async def test_redirect_to_another_scheme_is_refused(upstream, location):
    provider, repo = ckan(upstream)
    upstream.routes["/api/3/action/package_show"] = (302, {"Location": location}, None)
    with pytest.raises(UpstreamError, match="does not follow"):
        await provider.resolve_ref(repo)


async def test_doi_redirect_to_an_internal_host_is_refused(upstream, internal):
    provider = ZenodoRepoProvider(
        denied_networks=INTERNAL, doi_resolver_url=upstream.url + "/", url=upstream.url
    )
    upstream.routes["/10.5281/zenodo.1"] = (
        302,
        {"Location": f"http://127.0.0.2:{internal.port}/records/1"},
        None,
    )
    with pytest.raises(DeniedNetwork):
        await provider.resolve_ref(provider.parse("10.5281/zenodo.1"))
    assert internal.connections == []


async def test_api_token_is_not_sent_across_a_redirect(upstream, internal):
    """A redirect to another origin is followed without the API token."""
    provider = GitHubRepoProvider(denied_networks=[], api_url=upstream.url, access_token="tok")
    upstream.routes["/repos/o/r/commits/main"] = (
        302,
        {"Location": "/moved/commits/main"},
        None,
    )
    upstream.routes["/moved/commits/main"] = (
        301,
        {"Location": f"http://127.0.0.2:{internal.port}/commits/main"},
        None,
    )
    with pytest.raises(UpstreamError):
        await provider.resolve_ref(provider.parse("o/r/main"))
    assert [r.headers.get("Authorization") for r in upstream.requests] == ["token tok"] * 2
    # With every network allowed the request reached the other origin, without the token.
    assert internal.connections == ["127.0.0.2"]
    assert b"GET /commits/main" in internal.received[0]
    assert b"tok" not in internal.received[0]


# A git server advertising a huge number of refs.


async def test_ls_remote_stops_at_the_byte_cap_with_bounded_memory():
    server, fake = await serve_refs(50_000)
    provider = GitRepoProvider(
        denied_networks=[], max_ref_listing_bytes=256 * 1024, resolve_timeout=60
    )
    repo = provider.parse(git_spec(fake.url))
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError, match="too many refs") as info:
            await provider.resolve_ref(repo)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.close()
        await server.wait_closed()
    assert fake.served == [50_000]
    # 50,000 refs are about 3 MB of listing; the service holds at most the cap.
    assert peak < 3 * 1024 * 1024, peak
    assert "refs/heads/main" in info.value.message or "full branch name" in info.value.message


async def test_ls_remote_matches_exact_ref_names():
    server, fake = await serve_refs(["refs/heads/evil/main", "refs/tags/x/main"])
    provider = GitRepoProvider(denied_networks=[], resolve_timeout=30)
    try:
        with pytest.raises(RefNotFound):
            await provider.resolve_ref(provider.parse(git_spec(fake.url)))
    finally:
        server.close()
        await server.wait_closed()


async def test_git_over_http_is_pinned_to_the_checked_addresses(loopback_service):
    denied = parse_networks(["10.0.0.0/8"])
    url = f"http://localhost:{loopback_service.port}/repo.git"
    options = await git_network_options(url, denied)
    assert options[:2] == ["-c", "http.followRedirects=false"]
    assert options[3].startswith(f"http.curloptResolve=localhost:{loopback_service.port}:")
    assert "127.0.0.1" in options[3]
    # Nothing to pin: no check, git://, or an IP literal.
    assert await git_network_options(url, ()) == options[:2]
    assert await git_network_options("git://localhost/r.git", denied) == options[:2]
    assert await git_network_options("https://[::1]/r.git", denied) == options[:2]
    # git accepts the options and connects where they say.
    provider = GitRepoProvider(
        denied_networks=["10.0.0.0/8"], allowed_schemes=["http"], resolve_timeout=10
    )
    repo = provider.parse(git_spec(f"http://localhost:{loopback_service.port}/repo.git"))
    with pytest.raises(UpstreamError):
        await provider.resolve_ref(repo)
    assert b"GET /repo.git/info/refs?service=git-upload-pack" in b"".join(loopback_service.received)


async def test_ls_remote_memory_limit_stops_git_reading_a_huge_advertisement():
    """git reads every advertised ref before filtering: its own memory is capped too."""
    server, fake = await serve_refs(200_000)
    provider = GitRepoProvider(
        denied_networks=[],
        max_ref_listing_bytes=64 * 1024 * 1024,
        ls_remote_memory_limit=32 * 1024 * 1024,
        resolve_timeout=60,
    )
    try:
        with pytest.raises(UpstreamError, match="too many refs"):
            await provider.resolve_ref(provider.parse(git_spec(fake.url)))
    finally:
        server.close()
        await server.wait_closed()
