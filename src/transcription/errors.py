"""Errors the core logic raises, named after the gRPC status they become.

Core modules stay free of gRPC: they raise these, the transport layer maps them
to a status code (server side) and back (client side), so a message written
deep in the downloader reaches the browser unchanged.
"""

from __future__ import annotations

# Trailing-metadata key set on every error status a service sends (grpc_server.py): an
# UNAVAILABLE without it comes from the caller's own gRPC library, so the connection failed.
SENT_BY_SERVICE = "transcription-error"


class ServiceError(Exception):
    """Base class: an expected failure with a message fit for the end user."""

    status = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    status = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    status = "NOT_FOUND"


class OutOfRange(ServiceError):
    """A byte offset past the end of stored audio."""

    status = "OUT_OF_RANGE"


class FailedPrecondition(ServiceError):
    """A missing token, key, model or backend."""

    status = "FAILED_PRECONDITION"


class ResourceExhausted(ServiceError):
    status = "RESOURCE_EXHAUSTED"


class PayloadTooLarge(InvalidArgument):
    """A body, message or upload over the gateway's size limit (HTTP 413)."""


class Unavailable(ServiceError):
    """A dependency (another service, a remote host) cannot be reached."""

    status = "UNAVAILABLE"


class ServiceUnreachable(Unavailable):
    """The service itself could not be reached (no connection): nothing was done, so calling again is safe."""


class Cancelled(ServiceError):
    status = "CANCELLED"


class DeadlineExceeded(ServiceError):
    status = "DEADLINE_EXCEEDED"


class Unimplemented(ServiceError):
    status = "UNIMPLEMENTED"


BY_STATUS: dict[str, type[ServiceError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        OutOfRange,
        NotFound,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        Cancelled,
        DeadlineExceeded,
        Unimplemented,
    )
}


def from_status(status_name: str, message: str) -> ServiceError:
    """The exception for a gRPC status name such as ``"NOT_FOUND"``."""
    return BY_STATUS.get(status_name, ServiceError)(message)
