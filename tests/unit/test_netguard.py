"""The network guard: IP literals in every spelling, embedded IPv4, and what check_url refuses."""

from __future__ import annotations

import ipaddress

import pytest

from binderhub_service.errors import InvalidSpec
from binderhub_service.netguard import (
    DEFAULT_DENIED_NETWORKS,
    DeniedNetwork,
    check_url,
    is_denied,
    literal_address,
    parse_networks,
    resolve_host,
)

DENIED = parse_networks(DEFAULT_DENIED_NETWORKS)


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("012.0.0.1", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
    ],
)
def test_literal_spellings(spelling, address):
    assert literal_address(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize("name", ["example.org", "1e100.net", "0x7g.1", "", "a b"])
def test_names_are_not_literals(name):
    assert literal_address(name) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "224.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "::127.0.0.1",
    ],
)
def test_default_denies(address):
    assert is_denied(ipaddress.ip_address(address), DENIED)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111"]
)
def test_default_allows_public_addresses(address):
    assert not is_denied(ipaddress.ip_address(address), DENIED)


def test_bad_network_is_a_config_error():
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f.1:8080/",
        "https://0177.0.0.1/",
        "http://127.1/",
        "http://0/",
        "http://127.0.0.1./",
        "http://[::1]:80/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://user:pw@127.0.0.1/",
        "git://169.254.169.254/repo.git",
        "git://10.0.0.1/repo.git",
        "https://192.168.1.1/repo.git",
        "https://100.64.0.1/repo.git",
        "https://[fd00::1]/repo.git",
    ],
)
async def test_check_url_refuses_denied_hosts(url):
    with pytest.raises(DeniedNetwork) as info:
        await check_url(url, DENIED)
    assert info.value.status_code == 403
    # The message names no address the host resolved to.
    for address in ("127.0.0.1", "::1", "10.0.0.1", "169.254.169.254"):
        if address not in url:
            assert address not in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ssh://git@example.org/repo.git",
        "ext::sh -c id",
        "ftp://example.org/",
        "https:///nohost",
        "https://example.org:99999/",
        "https://exa\uff03mple.org/",
    ],
)
async def test_check_url_refuses_what_it_cannot_check(url):
    with pytest.raises(InvalidSpec) as info:
        await check_url(url, DENIED)
    assert info.value.status_code == 400


async def test_empty_list_allows_loopback_without_resolving():
    await check_url("http://127.0.0.1:1/", ())
    await check_url("git://no-such-host.invalid/repo.git", ())


async def test_resolve_host_returns_checked_addresses():
    infos = await resolve_host("127.0.0.1", 80, parse_networks(["10.0.0.0/8"]))
    assert {sockaddr[0] for _, sockaddr in infos} == {"127.0.0.1"}
