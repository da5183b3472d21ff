"""Keep every test's traffic on loopback.

Installed in the test process (conftest) and, through ``sitecustomize``, in
every service subprocess the tests start:

* names ending in ``.test`` (and ``localhost``) resolve to 127.0.0.1, so tests
  can use real-looking host names that still land on the local server;
* names ending in ``.invalid`` fail to resolve at once;
* any other name fails to resolve without a DNS query leaving the machine;
* connecting to an address outside 127.0.0.0/8 or ::1 raises, so a broken
  SSRF guard cannot reach a real private or public address.
"""

from __future__ import annotations

import ipaddress
import socket

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class BlockedByTestGuard(ConnectionRefusedError):
    pass


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def _is_legacy_ipv4(name: str) -> bool:
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or _is_ip(name):
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    if _is_legacy_ipv4(name):
        # "2130706433", "0x7f000001", "0177.0.0.1", "127.1": the C library reads these as IPv4
        # addresses without any DNS query, so the guards under test must meet them as such.
        return _real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    name = name.rstrip(".").lower()
    if name == "localhost" or name.endswith(".test"):
        return _real_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
    raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known ({name}: outside-name lookups are blocked in tests)")


def _check(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    if not _is_ip(host):
        host = _getaddrinfo(host, None)[0][4][0]
    ip = ipaddress.ip_address(host.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise BlockedByTestGuard(f"test network guard: connection to {host} blocked (loopback only)")


def _connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def install() -> None:
    socket.getaddrinfo = _getaddrinfo
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
