"""Refuse cross-site use of the gateway from other web pages.

Browsers let any page open a WebSocket to ``ws://127.0.0.1:8000`` and send
simple cross-site POSTs, so without a check any site the user visits could run
jobs on their machine, read the transcripts or clear the caches. Browsers
always send ``Origin`` on those requests; the gateway accepts them only from
its own origin (the ``Host`` the browser used) or from ``GATEWAY_ALLOWED_ORIGINS``.
Clients that are not browsers send no ``Origin`` and are not affected.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

# Methods that change state or start work; GETs only read.
GUARDED_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class OriginGuard:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]):
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] in GUARDED_METHODS)
        if guarded and not self.origin_allowed(scope):
            await self.refuse(scope, send)
            return
        await self.app(scope, receive, send)

    def origin_allowed(self, scope: Scope) -> bool:
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser
        origin = origin.rstrip("/").lower()
        if origin in self.allowed or "*" in self.allowed:
            return True
        return urlsplit(origin).netloc == headers.get("host", "").lower()

    @staticmethod
    async def refuse(scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            # closing before accepting makes the server answer the handshake with 403
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "cross-origin request refused (set GATEWAY_ALLOWED_ORIGINS to allow an origin)"}).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
