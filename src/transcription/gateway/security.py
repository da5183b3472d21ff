"""Who may drive the gateway, and how hard: hosts, token, rate, size, headers.

In front of the routes, outermost first:

* `HostGuard` — Starlette's `TrustedHostMiddleware` with two exemptions:
  ``/health`` and ``/metrics`` answer any Host (kubelet probes and Prometheus
  use the pod's IP). A DNS-rebinding page reaches the gateway under its own
  hostile name, so it is refused here before the Origin check (which such a
  page would pass: its Origin matches the Host it sent).
* `OriginGuard` (origin.py) — cross-site pages.
* `TokenGuard` — with ``GATEWAY_API_TOKEN`` set, everything but the page, its
  static files, ``/health`` and ``/metrics`` needs the token: a Bearer header,
  or for the WebSocket (browsers cannot set headers on it) the subprotocol
  ``token.<token>`` (offered with ``transcription``, which is what the
  handshake echoes: the token stays out of the response); a WebSocket
  without either may still send ``{"type": "auth", "token": ...}`` first
  (checked in the endpoint). A wrong token is answered 401 with a JSON body,
  the WebSocket handshake included (where the server can answer a handshake
  with a response of its own). The audio and export links a job hands out
  are signed (`sign_url`) instead.
* `SecurityHeaders` — a Content-Security-Policy the page satisfies (no inline
  script or style, nothing from another origin but thumbnails), and the usual
  nosniff / no-referrer / no-framing headers, on every response: refused
  handshakes, and an unexpected error's 500 (a JSON body, the trace in the log),
  which would otherwise leave as Starlette's plain-text page without them.

`RateLimiter` (per client address, a sliding minute) and `read_json` (bounded
bodies) are called by the endpoints that start work. `safe_filename` is what a
client's file name becomes before the gateway shows it or sends it on: files
on disk are named by content id only, never after what a client called them.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import re
import time
import unicodedata
import urllib.parse

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose

from transcription import errors

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/metrics")  # any Host, no token: probes and scrapers
PUBLIC_PATHS = ("/", "/static/", "/api/config")  # no token: the page must load to ask for one
TOKEN_SUBPROTOCOL = "token."
WEBSOCKET_SUBPROTOCOL = "transcription"  # echoed instead of the token subprotocol when offered with it

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https:",  # video thumbnails come from the video's site
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def default_allowed_hosts(listen_host: str) -> list[str]:
    """The listener's own address and the loopback names; any host for a wildcard listener."""
    if listen_host in ("0.0.0.0", "::", ""):
        return ["*"]
    hosts = {listen_host, "localhost", "127.0.0.1", "::1"}
    return sorted(f"[{h}]" if ":" in h and not h.startswith("[") else h for h in hosts)  # IPv6 as the Host header writes it


class HostGuard(TrustedHostMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket" and not self.allow_any and not self._allowed(Headers(scope=scope).get("host", "")):
            # Starlette's answer is an HTTP response, which a WebSocket handshake cannot carry:
            # closing before accepting makes the server answer it with 403
            await WebSocketClose(code=1008)(scope, receive, send)
        elif scope["type"] == "http" and not self.allow_any and not self._allowed(Headers(scope=scope).get("host", "")):
            # Starlette answers in plain text; every other refusal here is JSON
            error = "this gateway does not answer to that Host header (set GATEWAY_ALLOWED_HOSTS to add a name)"
            await JSONResponse({"error": error}, status_code=400)(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def _allowed(self, host_header: str) -> bool:
        """The host part (brackets kept for IPv6, as Starlette compares it) against the allow-list."""
        host = (host_header.split("]")[0] + "]" if host_header.startswith("[") else host_header.split(":")[0]).lower()
        return any(host == pattern or (pattern.startswith("*") and host.endswith(pattern[1:])) for pattern in self.allowed_hosts)


SIGNED_PREFIXES = ("/api/audio/", "/api/transcripts/")  # what <audio> and download links fetch, without headers
SIGNED_URL_SECONDS = 24 * 3600


def sign_url(path: str, token: str, now: float | None = None) -> str:
    """``path`` with an expiry and an HMAC of both under the token: a link to this one resource.

    <audio> and download links cannot send an Authorization header; with a
    token set, the gateway hands the page these instead (in ``capture_ready``
    and ``complete``), good for that path only, for a day.
    """
    if not token:
        return path
    expires = int((time.time() if now is None else now) + SIGNED_URL_SECONDS)
    return f"{path}?expires={expires}&signature={_signature(path, expires, token)}"


def _signature(path: str, expires: int, token: str) -> str:
    return hmac.new(token.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_url_valid(scope: Scope, token: str) -> bool:
    path = scope["path"]
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not path.startswith(SIGNED_PREFIXES):
        return False
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        expires, signature = int(query["expires"][0]), query["signature"][0]
    except (KeyError, ValueError):
        return False
    return expires > time.time() and hmac.compare_digest(signature, _signature(path, expires, token))


def accepted_subprotocol(scope: Scope) -> str | None:
    """The subprotocol a WebSocket handshake is answered with: one the client offered (or a browser drops it).

    The page offers ``transcription`` and ``token.<token>``: echoing the first keeps the token out of the
    response headers (proxies log those). The token is echoed only when it is all a client offered.
    """
    offered = scope.get("subprotocols", [])
    if WEBSOCKET_SUBPROTOCOL in offered:
        return WEBSOCKET_SUBPROTOCOL
    return next((protocol for protocol in offered if protocol.startswith(TOKEN_SUBPROTOCOL)), None)


def websocket_token(scope: Scope) -> str | None:
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith(TOKEN_SUBPROTOCOL):
            return protocol[len(TOKEN_SUBPROTOCOL) :]
    return None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenGuard:
    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.token or scope["type"] not in ("http", "websocket") or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # A token in the subprotocol is checked now; without one the endpoint waits for an auth message.
            given = websocket_token(scope)
            if given is not None and not token_matches(given, self.token):
                await refuse_websocket(scope, receive, send, self._refusal(scope))
                return
            scope["state"] = {**scope.get("state", {}), "authenticated": given is not None}
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, given = authorization.partition(" ")
        if (scheme.lower() == "bearer" and token_matches(given.strip(), self.token)) or signed_url_valid(scope, self.token):
            await self.app(scope, receive, send)
            return
        await self._refusal(scope)(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> JSONResponse:
        body = {"error": "this gateway needs its API token: send 'Authorization: Bearer <token>'"}
        if scope["path"].startswith("/v1/"):  # the OpenAI API's error shape
            body = {"error": {"message": body["error"], "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @staticmethod
    def _public(path: str) -> bool:
        return path in OPEN_PATHS or path == "/" or path == "/api/config" or path.startswith("/static/")


async def refuse_websocket(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
    """Answer a WebSocket handshake with ``response`` where the server can send one; else close it (403)."""
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await WebSocketClose(code=1008)(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            # (a refused WebSocket handshake is an HTTP response too: "websocket.http.response.start")
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                started = True
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((n, v) for n, v in SECURITY_HEADERS if n not in names)]
            await send(message)

        if scope["type"] == "websocket":
            await self.app(scope, receive, with_headers)
            return
        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            if started:
                raise  # too late for a response of our own: the server cuts the connection
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            await JSONResponse({"error": "internal error; see the gateway log"}, status_code=500)(scope, receive, with_headers)


# Control characters (NUL, line breaks), format characters (bidi overrides such as U+202E, zero-width
# characters), surrogates, private-use and unassigned code points, line and paragraph separators.
_UNSAFE_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_FILENAME_CHARS = 255
_MAX_EXTENSION_CHARS = 16


def _name_char(char: str) -> str:
    """What a character of a file name becomes: white space a space, an unsafe character nothing."""
    if char.isspace():
        return " "
    return "" if unicodedata.category(char) in _UNSAFE_NAME_CATEGORIES else char


def safe_filename(name: str, default: str = "") -> str:
    """A client's file name made fit to show and to put in a header; ``default`` when nothing is left.

    Its last path component only (after ``/`` or a backslash: a browser may send the client's whole
    path), without the characters of `_UNSAFE_NAME_CATEGORIES` (a right-to-left override, U+202E, makes
    ``evil<U+202E>gpj.exe`` look like ``evilexe.jpg``), white space collapsed to single spaces, no
    leading or trailing dots or spaces (``..``, hidden files), at most 255 characters, extension kept.
    """
    last = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    cleaned = " ".join("".join(map(_name_char, last)).split()).strip(". ")
    if len(cleaned) > MAX_FILENAME_CHARS:
        stem, dot, extension = cleaned.rpartition(".")
        if dot and stem and len(extension) <= _MAX_EXTENSION_CHARS:
            cleaned = stem[: MAX_FILENAME_CHARS - len(extension) - 1].rstrip(". ") + dot + extension
        else:
            cleaned = cleaned[:MAX_FILENAME_CHARS].rstrip(". ")
    return cleaned or default


class RateLimiter:
    """At most ``per_minute`` starts per client address in any sliding minute (0 = unlimited)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._starts: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def check(self, client: str) -> None:
        if not self.per_minute:
            return
        now = time.monotonic()
        starts = self._starts[client]
        while starts and now - starts[0] >= 60:
            starts.popleft()
        if len(starts) >= self.per_minute:
            wait = 60 - (now - starts[0])
            raise errors.ResourceExhausted(f"too many requests from this address ({self.per_minute} a minute); retry in {wait:.0f} s")
        starts.append(now)
        if len(self._starts) > 10_000:  # forget idle clients
            for key in [k for k, v in self._starts.items() if not v or now - v[-1] >= 60]:
                del self._starts[key]


def client_address(connection) -> str:
    return connection.client.host if connection.client else "unknown"


async def read_json(request: Request, limit: int) -> object:
    """The request's JSON body, refused with 413 past ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise errors.PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.InvalidArgument("the body must be JSON") from None
