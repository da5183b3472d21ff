"""Refuse cross-site use of the gateway from other web pages.

Browsers let any page open a WebSocket to ``ws://127.0.0.1:8000`` and send
simple cross-site POSTs, so without a check any site the user visits could run
jobs on their machine, read the transcripts or clear the caches. Browsers
always send ``Origin`` on those requests; the gateway accepts them only from
its own origin (the ``Host`` the browser used) or from ``GATEWAY_ALLOWED_ORIGINS``.
Clients that are not browsers send no ``Origin`` and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

# Methods that change state or start work; GETs only read.
GUARDED_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class OriginGuard:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]):
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] in GUARDED_METHODS)
        if not guarded or self.origin_allowed(Headers(scope=scope)):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            # closing before accepting makes the server answer the handshake with 403
            await WebSocketClose(code=1008)(scope, receive, send)
        else:
            error = "cross-origin request refused (set GATEWAY_ALLOWED_ORIGINS to allow an origin)"
            await JSONResponse({"error": error}, status_code=403)(scope, receive, send)

    def origin_allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser
        origin = origin.rstrip("/").lower()
        if origin in self.allowed or "*" in self.allowed:
            return True
        return urlsplit(origin).netloc == headers.get("host", "").lower()
