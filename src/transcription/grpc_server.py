"""The bootstrap every gRPC service shares.

`grpc.aio` server with the standard health service (per-service status),
server reflection (so ``grpcurl -plaintext HOST:PORT list`` works), optional
TLS or mutual TLS (`transcription.tls`; then ``grpcurl -cacert CA.pem ...``), error
mapping from `transcription.errors` to status codes, and graceful shutdown:
on SIGTERM or SIGINT health turns NOT_SERVING, no new calls are accepted, and
in-flight streams get ``grace`` seconds before they are cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from transcription import metrics, tls
from transcription.errors import SENT_BY_SERVICE, ServiceError
from transcription.log import configure as configure_logging
from transcription.settings import CommonSettings

log = logging.getLogger(__name__)

OVERALL = ""  # the health service's name for "the whole server"


def _status_for(exc: ServiceError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.status, grpc.StatusCode.INTERNAL)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException):
    marked = ((SENT_BY_SERVICE, "1"),)  # this status is the service's answer, not a broken connection (clients.py)
    if isinstance(exc, ServiceError):
        await context.abort(_status_for(exc), exc.message, marked)
    # Anything else is a bug: log the trace here, send the client no internals.
    log.exception("unexpected error", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", marked)


def rpc(method):
    """Decorator for servicer methods: turns `ServiceError` into a gRPC status.

    Works for unary methods (coroutines) and server-streaming ones (async
    generators).
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            stream = method(self, request, context)
            try:
                async for item in stream:
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status
                await _abort(context, exc)
            finally:
                await stream.aclose()  # now, not when collected: a cancelled call must stop its work at once

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status
            await _abort(context, exc)

    return unary_wrapper


def server_options(max_message_bytes: int, max_connection_age: float = 0.0) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Long decodes stream nothing for a while; keep idle connections alive.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
    if max_connection_age > 0:
        # Clients reconnect (and re-resolve DNS) when a connection reaches this age, so
        # replicas added by a scale-up get calls too; in-flight calls get a grace period.
        options += [
            ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", 3_600_000),
        ]
    return options


def run_service(
    name: str,
    settings: CommonSettings,
    build: Callable[[CommonSettings], object],
    add_to_server: Callable[[object, grpc.aio.Server], None],
    service: ServiceDescriptor,
    on_started: Callable[[object], Awaitable[None]] | None = None,
) -> None:
    """What each service's console command runs: logging, ``build(settings)``, serve.

    ``name`` picks the listener settings (``<name>_host``, ``<name>_port``);
    ``add_to_server`` is the generated ``add_<Service>Servicer_to_server`` and
    ``service`` its descriptor; ``on_started(servicer)`` runs once the port is
    open and before health turns SERVING (model preloading).
    """
    configure_logging(name, settings.log_level, secrets_from=settings)
    try:
        # before anything listens: a TLS misconfiguration stops the start, never falls back to plain text
        credentials = tls.server_credentials(settings)
        tls.client_tls(settings)
    except tls.TlsConfigError as error:
        log.error("%s cannot start: %s", name, error)
        raise SystemExit(2) from None
    log.info("%s: gRPC with %s", name, tls.describe(settings))
    metrics.serve_metrics(getattr(settings, f"{name}_metrics_port", 0))

    async def main() -> None:
        servicer = build(settings)  # inside the loop: servicers may create asyncio objects
        await serve(
            name=name,
            host=getattr(settings, f"{name}_host"),
            port=getattr(settings, f"{name}_port"),
            register=lambda server: add_to_server(servicer, server),
            service_names=[service.full_name],
            grace_seconds=settings.grpc_grace_seconds,
            max_message_bytes=settings.grpc_max_message_bytes,
            max_connection_age=settings.grpc_max_connection_age_seconds,
            on_started=(lambda: on_started(servicer)) if on_started else None,
            credentials=credentials,
        )

    asyncio.run(main())


async def serve(
    *,
    name: str,
    host: str,
    port: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: list[str],
    grace_seconds: float,
    max_message_bytes: int,
    max_connection_age: float = 0.0,
    on_started: Callable[[], Awaitable[None]] | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> None:
    """Run a gRPC server until SIGTERM/SIGINT.

    ``register`` adds the servicers; ``service_names`` are their full names
    (``transcription.v1.Asr``) for health and reflection. With ``credentials``
    (`transcription.tls.server_credentials`) the port speaks TLS only.
    """
    server = grpc.aio.server(options=server_options(max_message_bytes, max_connection_age), interceptors=[metrics.MetricsInterceptor(name)])
    register(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        service_names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )

    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"{name}: cannot listen on {address}")
    await server.start()

    if on_started is not None:
        await on_started()
    for service in [OVERALL, *service_names]:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on %s (%s)", name, address, ", ".join(service_names))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    stop_waiter = asyncio.create_task(stopping.wait())
    ended_waiter = asyncio.create_task(server.wait_for_termination())
    await asyncio.wait({stop_waiter, ended_waiter}, return_when=asyncio.FIRST_COMPLETED)
    stop_waiter.cancel()

    log.info("%s shutting down: letting in-flight calls finish for up to %.0f s", name, grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_seconds)
    ended_waiter.cancel()
    log.info("%s stopped", name)
