"""Foreign, missing and mismatched Host and Origin headers on the WebSocket and every state-changing
endpoint (DNS rebinding, cross-site requests), and path traversal on every endpoint that takes an
id or a name.

A refused request is answered with a JSON error (400 for a host the gateway does not answer to,
403 for a foreign web origin) and changes nothing; a request without an Origin (not from a browser)
is not a cross-site request and goes through.
"""

from __future__ import annotations

import http.client
import json

import pytest
from surfaces import Unchanged

from conftest import call

STATE_CHANGING = [
    ("POST", "/api/cache/clear", b""),
    ("POST", "/api/download-cache/clear", b""),
    ("POST", "/api/diarization-cache/clear", b""),
    ("POST", "/api/upload?filename=a.wav", b"RIFF"),
    ("POST", "/api/video-info", b'{"url": "http://media.test/a.wav"}'),
    ("POST", "/v1/audio/transcriptions", b""),
    ("POST", "/v1/audio/translations", b""),
]


def _own(system) -> str:
    return f"127.0.0.1:{system.ports.gateway}"


def headers_cases(system) -> dict[str, tuple[dict, int, str]]:
    own = _own(system)
    return {
        "foreign host": ({"Host": "attacker.example"}, 400, "host header"),
        "foreign host with the right port": ({"Host": f"attacker.example:{system.ports.gateway}"}, 400, "host header"),
        "our address as a subdomain": ({"Host": f"127.0.0.1.attacker.example:{system.ports.gateway}"}, 400, "host header"),
        "foreign origin": ({"Host": own, "Origin": "https://attacker.example"}, 403, "cross-origin"),
        "origin of another port": ({"Host": own, "Origin": "http://127.0.0.1:1"}, 403, "cross-origin"),
        "null origin (sandboxed frame)": ({"Host": own, "Origin": "null"}, 403, "cross-origin"),
        # our own host and port under https is the page behind a TLS-terminating proxy (an Ingress): allowed
        "origin as our address on https": ({"Host": own, "Origin": f"https://{own}"}, 0, ""),
        "own host, foreign origin in Referer only": ({"Host": own, "Referer": "https://attacker.example/"}, 0, ""),
    }


CASE_NAMES = [
    "foreign host",
    "foreign host with the right port",
    "our address as a subdomain",
    "foreign origin",
    "origin of another port",
    "null origin (sandboxed frame)",
    "origin as our address on https",
    "own host, foreign origin in Referer only",
]


def _request_without_host(port: int, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("method", "path", "body"), STATE_CHANGING)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_state_changing_endpoint_refuses_foreign_hosts_and_origins(system, method, path, body, case):
    headers, status, expected = headers_cases(system)[case]
    with Unchanged(system):
        got, response_headers, reply = call(system.ports.gateway, method, path, body, headers)
    if not status:  # not refused for its headers: judged on its own merits
        assert got != 403 and b"Host header" not in reply, (got, reply[:300])
        return
    assert got == status, (got, reply[:300])
    assert response_headers["content-type"] == "application/json"
    assert expected in json.loads(reply)["error"].lower()


@pytest.mark.parametrize(("method", "path", "body"), STATE_CHANGING)
def test_state_changing_endpoint_refuses_a_request_without_host(system, method, path, body):
    with Unchanged(system):
        status, reply = _request_without_host(system.ports.gateway, method, path, body)
    assert status == 400, (status, reply[:300])


def _handshake(port: int, headers: dict) -> int:
    """The status a WebSocket upgrade gets (101 = accepted)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", "/ws/transcribe", skip_host=True)  # only the Host the case gives, if any
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        for name, value in {**upgrade, **headers}.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("case", CASE_NAMES)
def test_websocket_refuses_foreign_hosts_and_origins(system, case):
    headers, status, _ = headers_cases(system)[case]
    # a handshake refused before it is accepted is answered 403, whatever the reason
    assert _handshake(system.ports.gateway, headers) == (403 if status else 101)


def test_websocket_refuses_a_missing_host_and_accepts_its_own(system):
    assert _handshake(system.ports.gateway, {}) == 403
    own = _own(system)
    assert _handshake(system.ports.gateway, {"Host": own}) == 101  # no Origin: not a browser
    assert _handshake(system.ports.gateway, {"Host": own, "Origin": f"http://{own}"}) == 101
    assert _handshake(system.ports.gateway, {"Host": f"localhost:{system.ports.gateway}"}) == 101


# -- path traversal ------------------------------------------------------------------------------

TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252f..%252f..%252fetc%252fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\etc\\passwd",
    "%2Fetc%2Fpasswd",
    "etc%00passwd",
    "%c0%ae%c0%ae%2f%c0%ae%c0%ae%2fetc%2fpasswd",
]
ENDPOINTS = [
    "/api/audio/{}.wav",
    "/api/transcripts/{}.srt",
    "/api/transcripts/x.{}",
    "/static/{}",
    "/{}",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("attempt", TRAVERSALS)
def test_traversal_reads_nothing_outside(system, endpoint, attempt):
    with Unchanged(system):
        status, headers, body = call(system.ports.gateway, "GET", endpoint.format(attempt))
    assert status in (400, 404), (status, body[:300])
    assert headers["content-type"] == "application/json", headers
    assert b"root:" not in body and b"transcription" not in body.lower().replace(b"transcript", b"")
