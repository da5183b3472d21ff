"""Refuse to fetch from private, loopback, link-local and other internal addresses.

A transcription service that downloads any URL it is given is an SSRF
vector: "transcribe http://169.254.169.254/..." must not reach the cloud
metadata endpoint. Every address a host name resolves to is checked, for every
hop of a redirect chain, and the connection goes to the checked address (the
aiohttp resolver below), so DNS rebinding cannot slip past between check and
connect.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from transcription.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> list[IPNetwork]:
    """``"127.0.0.0/8, ::1"`` -> networks; raises ValueError on a bad entry."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


class AddressPolicy:
    def __init__(self, allowed_networks: list[IPNetwork]):
        self.allowed_networks = allowed_networks

    def is_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed_networks):
            return True
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
        except ValueError as exc:
            raise InvalidArgument(f"not a valid URL: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            shown = parts.scheme or "none"
            raise InvalidArgument(f"unsupported URL scheme '{shown}': only http and https URLs can be fetched")
        host = parts.hostname
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
