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

IPv6 addresses that embed an IPv4 one (mapped, 6to4, NAT64, Teredo) are judged
by the embedded address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from transcription.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): the last 32 bits are IPv4.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def parse_networks(spec: str) -> list[IPNetwork]:
    """``"127.0.0.0/8, ::1"`` -> networks; raises ValueError on a bad entry."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


class AddressPolicy:
    def __init__(self, allowed_networks: list[IPNetwork]):
        self.allowed_networks = allowed_networks

    def is_allowed(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return self.is_allowed(embedded)
        return address.is_global and not address.is_multicast

    def check_address(self, host: str, address: str) -> None:
        if not self.is_allowed(ipaddress.ip_address(address.split("%")[0])):
            raise InvalidArgument(
                f"refusing to fetch from {host}: it resolves to a private, loopback or link-local address "
                "(set DOWNLOADER_ALLOWED_NETWORKS to allow it)"
            )

    def check_url(self, url: str) -> str:
        """Validate scheme and host syntax; returns the host. Literal IPs are checked here."""
        try:
            parts = urlsplit(url)
            # the host the HTTP client will actually connect to: yarl normalises
            # IDNA and Unicode digits ("①②⑦.0.0.1" is 127.0.0.1 to it)
            host = yarl.URL(url).host if parts.scheme in ("http", "https") else parts.hostname
        except ValueError as exc:
            raise InvalidArgument(f"not a valid URL: {exc}") from exc
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


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]  # the client's (obfuscation undone by ipaddress)
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


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
