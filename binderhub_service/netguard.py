"""Networks the service never reaches on a user's behalf, checked after DNS resolution.

Every outbound connection made for a user (provider APIs and their redirects,
``git ls-remote``, clones) is first checked here: the host is resolved with
``getaddrinfo`` and refused when *any* of its addresses lies in a denied
network. IP literals are understood in every spelling the C library accepts
(``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, ``0``, ``[::1]``,
``[::ffff:127.0.0.1]``, a trailing dot), and IPv6 forms that embed an IPv4
address (mapped, compatible, NAT64, 6to4) are checked as that address too.

The entry point for other code is :func:`check_url`; :func:`resolve_host`
also returns the addresses checked, so that a caller can connect to exactly
those (no second lookup an attacker's DNS server could answer differently);
:func:`git_network_options` gives the ``git -c`` options that do that for a
git command, and :class:`GuardedResolver` does it for Tornado's HTTP client.

Refusals are :class:`DeniedNetwork` errors whose message names neither the
address nor anything that answered: nothing is contacted before the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from tornado.netutil import Resolver

from .errors import Forbidden, InvalidSpec, UpstreamError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What ``c.RepoProviderCatalog.denied_networks`` holds unless configured.
DEFAULT_DENIED_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local machine
    "127.0.0.0/8",  # loopback
    "10.0.0.0/8",  # private (RFC 1918)
    "172.16.0.0/12",  # private (RFC 1918)
    "192.168.0.0/16",  # private (RFC 1918)
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "169.254.0.0/16",  # link-local, including cloud metadata at 169.254.169.254
    "192.0.0.0/24",  # IETF protocol assignments
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
    "::/128",  # unspecified
    "::1/128",  # loopback
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated, still routed by some)
    "ff00::/8",  # multicast
)

#: URL schemes that reach a host over the network and can be checked.
NETWORK_SCHEMES = frozenset({"http", "https", "git"})

_DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


class DeniedNetwork(Forbidden):
    """A host the service may not reach for users (its address is in a denied network)."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The networks named by ``values`` (CIDR strings); ``ValueError`` names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a network; use CIDR notation such as 10.0.0.0/8 or fc00::/7"
            ) from None
    return tuple(networks)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if address.version != 6:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_denied(address: IPAddress, denied: Sequence[IPNetwork]) -> bool:
    """Whether ``address``, or the IPv4 address it embeds, is in one of ``denied``."""
    forms: list[IPAddress] = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        forms.append(inner)
    return any(form in network for form in forms for network in denied)


def bare_host(host: str) -> str:
    """``host`` without IPv6 brackets, zone index or one trailing dot."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    return host


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it is an IP literal in any form the C library reads."""
    host = bare_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(c.isalnum() or c == "." for c in host):
        return None
    try:
        # inet_aton reads decimal, octal and hexadecimal parts and short forms
        # (127.1, 2130706433) as the resolver and git's curl do.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _refusal(host: str) -> DeniedNetwork:
    return DeniedNetwork(
        f"{host[:100]} cannot be reached from this service: the operator does not allow "
        "builds from its network."
    )


async def resolve_host(
    host: str,
    port: int,
    denied: Sequence[IPNetwork],
    family: int = socket.AF_UNSPEC,
) -> list[tuple[int, Any]]:
    """Resolve ``host`` and return ``(family, sockaddr)`` pairs, or refuse it.

    Raises :class:`DeniedNetwork` when the host is an IP literal in a denied
    network or any of its resolved addresses is, and
    :class:`~binderhub_service.errors.UpstreamError` when it does not resolve.
    Nothing is sent to the host itself.
    """
    name = bare_host(host)
    literal = literal_address(name)
    if literal is not None and is_denied(literal, denied):
        raise _refusal(host)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            str(literal) if literal is not None else name,
            port,
            family=family,
            type=socket.SOCK_STREAM,
        )
    except (OSError, UnicodeError):
        raise UpstreamError(
            f"The host {host[:100]} could not be found; check the URL.", 502
        ) from None
    if not infos:
        raise UpstreamError(f"The host {host[:100]} could not be found; check the URL.", 502)
    addresses: list[tuple[int, Any]] = []
    for info_family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if is_denied(address, denied):
            raise _refusal(host)
        addresses.append((info_family, sockaddr))
    return addresses


def url_host_port(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of a network URL; :class:`InvalidSpec` if it has none.

    Only :data:`NETWORK_SCHEMES` are accepted: ``file:``, ``ssh`` and remote
    helpers such as ``ext::`` never name a host that could be checked.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise InvalidSpec("The URL is not valid (bad host or port).") from None
    if scheme not in NETWORK_SCHEMES or "::" in url.split("/", 1)[0]:
        raise InvalidSpec(
            f"Only {', '.join(sorted(NETWORK_SCHEMES))} URLs can be fetched by this service."
        )
    if not host:
        raise InvalidSpec("The URL has no host.")
    return scheme, host, port or _DEFAULT_PORTS[scheme]


async def check_url(url: str, denied: Sequence[IPNetwork]) -> None:
    """Refuse ``url`` unless it is http(s) or git and its host lies outside ``denied``.

    Call it before any connection made for a user, on every hop (each redirect
    target, each submodule URL). ``denied`` comes from :func:`parse_networks`,
    e.g. of ``c.RepoProviderCatalog.denied_networks``; when it is empty every
    host is allowed and nothing is resolved. Raises :class:`InvalidSpec` for a
    URL with another scheme or no host, :class:`DeniedNetwork` for a host in a
    denied network, :class:`~binderhub_service.errors.UpstreamError` for a host
    that does not resolve.

    The check resolves the name once; a client that resolves it again may get
    another answer. Where the client allows it, connect to the addresses
    :func:`resolve_host` returned (``http.curloptResolve`` for git over
    http(s), :class:`GuardedResolver` for Tornado) and follow no redirect the
    check has not seen.
    """
    _, host, port = url_host_port(url)
    if denied:
        await resolve_host(host, port, denied)


async def git_network_options(url: str, denied: Sequence[IPNetwork]) -> list[str]:
    """Check ``url`` like :func:`check_url`; return ``git -c`` options that keep git to it.

    Put them before git's subcommand (``git *options ls-remote ...``, ``git
    *options clone ...``): git then follows no HTTP redirect (the check has
    not seen its target) and, for http(s), curl connects only to the checked
    addresses (``http.curloptResolve``) instead of asking DNS again. For
    ``git://`` no such pinning exists; the name is resolved once more by git.
    """
    scheme, host, port = url_host_port(url)
    options = ["-c", "http.followRedirects=false"]
    if not denied:
        return options
    infos = await resolve_host(host, port, denied)
    if scheme not in ("http", "https") or literal_address(host) is not None:
        # git:// cannot be pinned; an IP literal is not looked up again.
        return options
    addresses = []
    for _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        addresses.append(f"[{address}]" if address.version == 6 else str(address))
    pinned = ",".join(dict.fromkeys(addresses))
    return [*options, "-c", f"http.curloptResolve={bare_host(host).lower()}:{port}:{pinned}"]


class GuardedResolver(Resolver):
    """A Tornado resolver that refuses hosts in denied networks.

    Given to ``AsyncHTTPClient(force_instance=True, resolver=...)``, every
    connection the client opens, redirect targets included, goes to addresses
    that were checked, with no second DNS lookup.
    """

    def initialize(self, denied: Sequence[IPNetwork] = ()) -> None:
        self.denied = tuple(denied)

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return await resolve_host(host, port, self.denied, family)
