"""What each connection finds in its state: the gRPC clients, the settings, and what all of them share.

The lifespan puts these in Starlette's lifespan state, which is copied into
every request's ``state``; so anything a request changes lives in `Shared`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request
from starlette.websockets import WebSocket

from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.gateway.jobs import Clients, reachable
from transcription.gateway.security import RateLimiter, client_address
from transcription.gateway.settings import GatewaySettings

Service = TypeVar("Service", AsrClient, DiarizerClient, DownloaderClient)


@dataclass
class Shared:
    """What every connection of this process reads and changes."""

    rate_limiter: RateLimiter
    transcripts: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # job id -> finished transcript
    sessions: int = 0  # open WebSockets


def clients(connection: Request | WebSocket) -> Clients:
    return connection.state.clients


def settings(connection: Request | WebSocket) -> GatewaySettings:
    return connection.state.settings


def shared(connection: Request | WebSocket) -> Shared:
    return connection.state.shared


async def connected(connection: Request | WebSocket, client: Service) -> Service:
    """client, once its channel connects within GATEWAY_CONNECT_TIMEOUT_SECONDS (else ServiceUnreachable naming it)."""
    await reachable(client, settings(connection).gateway_connect_timeout_seconds or None)
    return client


def limit_rate(connection: Request | WebSocket) -> None:
    """Count one started job against the client's rate (RESOURCE_EXHAUSTED beyond it)."""
    shared(connection).rate_limiter.check(client_address(connection))
