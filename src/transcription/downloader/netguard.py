"""Refuse to fetch from private, loopback, link-local and other internal addresses.

A transcription service that downloads any URL it is given is an SSRF
vector: "transcribe http://169.254.169.254/..." must not reach the cloud
metadata endpoint. Two layers:

* early, for clear errors: the URL's host (as aiohttp/yarl will read it, so
  Unicode digits and other spellings of an IP are normalised first) and every
  address a name resolves to are checked, for every hop of a redirect chain;
* last, for everything else: ``install_connect_guard`` checks the peer address
  of every outgoing TCP connection the downloader process makes, whoever makes
  it (aiohttp, or yt-dlp with its own DNS, redirects and media URLs), so DNS
  rebinding and redirects inside yt-dlp cannot slip past either.

What is refused is an explicit table (``REFUSED_IPV4``, ``REFUSED_IPV6``; IPv6
outside global unicast). IPv6 addresses that embed an IPv4 one (mapped, 6to4,
NAT64 under the well-known prefix or a configured one of any RFC 6052 length)
are judged by the embedded address; Teredo is refused outright.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from transcription.errors import InvalidArgument

# Browsers and servers stop at about 8 kB; a longer "URL" is a mistake or an attack.
MAX_URL_CHARS = 8192

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(*specs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(spec) for spec in specs)


# What may never be fetched from unless DOWNLOADER_ALLOWED_NETWORKS says so: an
# explicit table rather than ``ipaddress.is_global``, whose answers changed
# between patch releases (CVE-2024-4032: 3.11.7 calls 192.0.0.8 global).
# From the IANA special-purpose address registries.
REFUSED_IPV4 = _networks(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT, shared address space
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata endpoints
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast, deprecated
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
# IPv6 is refused outside global unicast (2000::/3) unless it embeds an IPv4
# address (see below); inside it, these are refused too.
GLOBAL_UNICAST_IPV6 = ipaddress.ip_network("2000::/3")
REFUSED_IPV6 = _networks(
    "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
)
# IPv6 forms that carry an IPv4 address, judged by that address.
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
SIXTOFOUR = ipaddress.ip_network("2002::/16")
# NAT64 translates addresses under a prefix to the IPv4 address they embed, so
# "<prefix>::10.0.0.1" reaches 10.0.0.1. The well-known prefix is always a /96
# (RFC 6052). A network-specific prefix (any global /32-/96, or one inside the
# local-use 64:ff9b:1::/48 of RFC 8215) cannot be recognised from the address:
# where the host network has one, list it in DOWNLOADER_NAT64_PREFIXES.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)  # the only ones RFC 6052 defines


def nat64_embedded(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address in a NAT64 address with a prefix of ``prefix_length`` bits (RFC 6052 §2.2).

    For prefixes shorter than 96 bits the IPv4 address runs from the end of the
    prefix, skipping bits 64-71 (the "u" octet, always zero).
    """
    value = int(address)
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))  # 120 bits
    return ipaddress.IPv4Address((without_u >> (120 - prefix_length - 32)) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress, nat64_prefixes: tuple[ipaddress.IPv6Network, ...] = ()) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, or None when it embeds none."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in IPV4_MAPPED:
        return address.ipv4_mapped
    if address in SIXTOFOUR:
        return address.sixtofour
    for prefix in (NAT64_WELL_KNOWN, *nat64_prefixes):
        if address in prefix:
            return nat64_embedded(address, prefix.prefixlen)
    return None


def parse_networks(spec: str) -> list[IPNetwork]:
    """``"127.0.0.0/8, ::1"`` -> networks; raises ValueError on a bad entry."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


def parse_nat64_prefixes(spec: str) -> tuple[ipaddress.IPv6Network, ...]:
    """``"2001:db8:64::/96"`` -> prefixes; raises ValueError on a bad entry or length."""
    prefixes = tuple(parse_networks(spec))
    for prefix in prefixes:
        if prefix.version != 6 or prefix.prefixlen not in NAT64_PREFIX_LENGTHS:
            raise ValueError(f"{prefix} is not a NAT64 prefix: IPv6 with a length of {', '.join(map(str, NAT64_PREFIX_LENGTHS))}")
    return prefixes


class AddressPolicy:
    def __init__(self, allowed_networks: list[IPNetwork], nat64_prefixes: tuple[ipaddress.IPv6Network, ...] = ()):
        self.allowed_networks = allowed_networks
        self.nat64_prefixes = nat64_prefixes

    def is_allowed(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        embedded = embedded_ipv4(address, self.nat64_prefixes)
        if embedded is not None:
            return self.is_allowed(embedded)
        if isinstance(address, ipaddress.IPv4Address):
            return not any(address in net for net in REFUSED_IPV4)
        return address in GLOBAL_UNICAST_IPV6 and not any(address in net for net in REFUSED_IPV6)

    def check_address(self, host: str, address: str) -> None:
        if not self.is_allowed(ipaddress.ip_address(address.split("%")[0])):
            raise InvalidArgument(
                f"refusing to fetch from {host}: it resolves to a private, loopback or link-local address "
                "(set DOWNLOADER_ALLOWED_NETWORKS to allow it)"
            )

    def check_url(self, url: str) -> str:
        """Validate scheme and host syntax; returns the host. Literal IPs are checked here."""
        if len(url) > MAX_URL_CHARS:
            raise InvalidArgument(f"the URL is {len(url):,} characters long; at most {MAX_URL_CHARS:,} are accepted")
        try:
            parts = urlsplit(url)
            # the host the HTTP client will actually connect to: yarl normalises
            # IDNA and Unicode digits ("①②⑦.0.0.1" is 127.0.0.1 to it)
            host = yarl.URL(url).host if parts.scheme in ("http", "https") else parts.hostname
        except ValueError as exc:
            raise InvalidArgument(f"not a valid URL: {exc}") from exc
        except IndexError as exc:  # yarl's reading of some authorities ("http://[::1]@")
            raise InvalidArgument("not a valid URL: its host part cannot be read") from exc
        if parts.scheme not in ("http", "https"):
            shown = parts.scheme or "none"
            raise InvalidArgument(f"unsupported URL scheme '{shown}': only http and https URLs can be fetched")
        if not host:
            raise InvalidArgument("the URL has no host name")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host  # a name: checked when resolved
        self.check_address(host, host)
        return host

    def resolve_and_check(self, host: str) -> list[str]:
        """Resolve a host (blocking) and check every address; for yt-dlp, which resolves on its own."""
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise InvalidArgument(f"cannot resolve host {host}: {exc.strerror}") from exc
        addresses = sorted({info[4][0] for info in infos})
        for address in addresses:
            self.check_address(host, address)
        return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that only returns addresses the policy allows."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)  # OSError -> aiohttp's DNS error
        for result in results:
            self.policy.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


class RefusedAddress(PermissionError):
    """A connection to an address the policy refuses (raised by the connect guard)."""


_guarded_policy: AddressPolicy | None = None


def install_connect_guard(policy: AddressPolicy) -> None:
    """Check the peer of every outgoing IPv4/IPv6 TCP connection this process makes.

    Wraps ``socket.socket.connect``/``connect_ex``, which asyncio's event loop
    (aiohttp) and yt-dlp's HTTP handlers both end up calling. The downloader only
    ever connects out to media servers (gRPC's own sockets live in C, and it only
    accepts), so nothing legitimate is caught. Idempotent.
    """
    global _guarded_policy
    first = _guarded_policy is None
    _guarded_policy = policy
    if not first:
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0]).split("%")[0]
            if not _guarded_policy.is_allowed(ipaddress.ip_address(host)):
                raise RefusedAddress(
                    f"refusing to connect to {host}: a private, loopback or link-local address "
                    "(set DOWNLOADER_ALLOWED_NETWORKS to allow it)"
                )

    def connect(self, address):
        check(self, address)
        return original_connect(self, address)

    def connect_ex(self, address):
        check(self, address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
