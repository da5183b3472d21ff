"""Prometheus metrics every service exports (``prometheus-client``).

gRPC services serve them on their own HTTP port (``<SERVICE>_METRICS_PORT``,
0 = off); the gateway at ``/metrics`` on its HTTP port. Names and labels are
listed in the README. Request counts, errors, in-flight calls and durations
come from one server interceptor; the services add what only they know
(queue depth, cache hits, model loads, audio processed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("transcription_grpc_requests", "gRPC calls handled, by final status code", ["service", "method", "code"])
IN_FLIGHT = Gauge("transcription_grpc_in_flight", "gRPC calls being handled now", ["service", "method"])
DURATION = Histogram(
    "transcription_grpc_request_seconds",
    "Wall time of a gRPC call, streams included",
    ["service", "method"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge("transcription_queue_depth", "Admitted jobs waiting for a slot", ["service"])
ACTIVE_JOBS = Gauge("transcription_active_jobs", "Jobs holding a slot", ["service"])
CACHE = Counter("transcription_cache_lookups", "Result-cache lookups", ["service", "cache", "result"])
MODEL_LOAD = Histogram(
    "transcription_model_load_seconds", "Time to load a model", ["service", "model"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)
)
AUDIO_SECONDS = Counter("transcription_audio_seconds", "Seconds of audio processed", ["service", "backend"])
FIRST_SEGMENT = Histogram(
    "transcription_asr_first_segment_seconds",
    "From the start of decoding to the first segment",
    ["backend"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
SEGMENTS = Counter("transcription_asr_segments", "Segments transcribed", ["backend"])
JOBS = Counter("transcription_gateway_jobs", "WebSocket jobs, by outcome", ["outcome"])
SESSIONS = Gauge("transcription_gateway_websocket_sessions", "Open /ws/transcribe connections")
# Read at scrape time (the gateway's /metrics): after a job they return to where they were, or something leaked.
GATEWAY_TASKS = Gauge("transcription_gateway_tasks", "asyncio tasks alive in the gateway's event loop")
GATEWAY_THREADS = Gauge("transcription_gateway_threads", "Threads alive in the gateway process")


def serve_metrics(port: int) -> None:
    """Expose the metrics over HTTP on ``port`` (0 = do not)."""
    if port:
        start_http_server(port)


def track_admission(service: str, admission) -> None:
    """Queue depth and active jobs read from an `Admission` at scrape time."""
    QUEUE_DEPTH.labels(service).set_function(lambda: admission.waiting)
    ACTIVE_JOBS.labels(service).set_function(lambda: admission.active)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and tracks in-flight calls of every unary and server-streaming method."""

    def __init__(self, service: str):
        self.service = service

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        labels = (self.service, method)
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                with self._measure(labels, context):
                    return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request, context) -> AsyncIterator:
                with self._measure(labels, context):
                    handler_stream = inner_stream(request, context)
                    try:
                        async for item in handler_stream:
                            yield item
                    finally:
                        # closed now, not when collected: the handler's own clean-up
                        # (stopping a model mid-file) must run when the call ends
                        await handler_stream.aclose()

            return grpc.unary_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)
        return handler

    @contextlib.contextmanager
    def _measure(self, labels: tuple[str, str], context) -> Iterator[None]:
        began = time.monotonic()
        IN_FLIGHT.labels(*labels).inc()
        code = "OK"
        try:
            yield
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except BaseException:
            code = "UNKNOWN"  # unless the handler set a status before failing (context.abort does)
            raise
        finally:
            status = context.code()
            if status is not None and status != grpc.StatusCode.OK:
                code = status.name
            IN_FLIGHT.labels(*labels).dec()
            DURATION.labels(*labels).observe(time.monotonic() - began)
            REQUESTS.labels(*labels, code).inc()
