"""Starlette routes: the WebSocket job stream, the REST API and the UI.

Module-level endpoints; the gRPC clients live in the lifespan state
(``request.state.clients``) because grpc.aio channels belong to the event loop
that creates them. A `ServiceError` from any service becomes an HTTP status
with a JSON body in one exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import prometheus_client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from transcription import errors, metrics
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.gateway.jobs import BACKEND_NAMES, Clients, Job, JobRequest
from transcription.gateway.origin import OriginGuard
from transcription.gateway.settings import GatewaySettings
from transcription.log import configure as configure_logging

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MB = 1024 * 1024

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 412,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


async def service_error(request: Request, exc: errors.ServiceError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=HTTP_STATUS.get(exc.status, 500))


def _clients(connection: Request | WebSocket) -> Clients:
    return connection.state.clients


# -- pages and status ------------------------------------------------------------


async def index(request: Request):
    return FileResponse(STATIC / "index.html")


async def health(request: Request):
    clients = _clients(request)
    names = ("downloader", "asr", "diarizer")
    statuses = await asyncio.gather(*(getattr(clients, n).health() for n in names))
    healthy = all(s == "SERVING" for s in statuses)
    return JSONResponse(
        {"status": "healthy" if healthy else "degraded", "timestamp": datetime.now(UTC).isoformat(), "services": dict(zip(names, statuses))}
    )


async def gpu(request: Request):
    info = await _clients(request).asr.device_info()
    return JSONResponse(
        {
            "gpu_available": info.gpu_available,
            "gpu_name": info.gpu_name or None,
            "cuda_version": info.cuda_version or None,
            "gpu_count": info.gpu_count,
            "gpu_memory_total_bytes": info.gpu_memory_total_bytes,
            "device": info.device,
            "compute_type": info.compute_type,
        }
    )


async def models(request: Request):
    reply = await _clients(request).asr.list_models()
    return JSONResponse(
        {
            "default_model": reply.default_model,
            "models": [
                {
                    "name": m.name,
                    "backend": BACKEND_NAMES.get(m.backend, "faster-whisper"),
                    "available": m.available,
                    "loaded": m.loaded,
                    "source": m.source,
                    "multilingual": m.multilingual,
                    "languages": list(m.languages),
                    "size_bytes": m.size_bytes,
                    "device": m.device or None,
                }
                for m in reply.models
            ],
        }
    )


async def video_info(request: Request):
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.InvalidArgument('the body must be JSON: {"url": ...}') from None
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise errors.InvalidArgument("URL is required")
    m = await _clients(request).downloader.video_info(url)
    return JSONResponse(
        {
            "title": m.title,
            "thumbnail": m.thumbnail_url,
            "duration": m.duration_seconds,
            "uploader": m.uploader,
            "view_count": m.view_count,
            "upload_date": m.upload_date,
            "description": m.description,
            "webpage_url": m.webpage_url,
            "extractor": m.extractor,
        }
    )


# -- caches: the reference app's JSON shapes ---------------------------------------


def _stats_json(stats, with_metadata: bool = False) -> dict:
    out = {"total_files": stats.total_files, "total_size": stats.total_bytes, "total_size_mb": round(stats.total_bytes / MB, 2)}
    if with_metadata:
        out["metadata_files"] = stats.metadata_files
    return out


def _cleared_json(result) -> dict:
    return {"cleared": True, "files_deleted": result.files_deleted, "space_freed_mb": round(result.bytes_freed / MB, 2)}


async def cache_stats(request: Request):
    return JSONResponse(_stats_json(await _clients(request).asr.cache_stats()))


async def cache_clear(request: Request):
    return JSONResponse(_cleared_json(await _clients(request).asr.clear_cache()))


async def download_cache_stats(request: Request):
    return JSONResponse(_stats_json(await _clients(request).downloader.cache_stats(), with_metadata=True))


async def download_cache_clear(request: Request):
    return JSONResponse(_cleared_json(await _clients(request).downloader.clear_cache()))


async def diarization_cache_stats(request: Request):
    return JSONResponse(_stats_json(await _clients(request).diarizer.cache_stats()))


async def diarization_cache_clear(request: Request):
    return JSONResponse(_cleared_json(await _clients(request).diarizer.clear_cache()))


# -- the job stream ------------------------------------------------------------------


async def metrics_endpoint(request: Request):
    return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)


async def ws_transcribe(websocket: WebSocket):
    await websocket.accept()
    with metrics.SESSIONS.track_inprogress():
        await _serve_jobs(websocket)


async def _serve_jobs(websocket: WebSocket) -> None:
    clients, settings = _clients(websocket), websocket.state.settings

    async def send(message: dict) -> None:
        await websocket.send_json(message)

    try:
        # One connection may run several jobs, one after the other.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("text") is None:
                await send({"type": "error", "error": "send the request as a JSON text message"})
                continue
            try:
                request = JobRequest.from_message(json.loads(message["text"]))
            except json.JSONDecodeError:
                await send({"type": "error", "error": "the request must be JSON"})
                continue
            except errors.ServiceError as exc:
                await send({"type": "error", "error": exc.message})
                continue
            job = Job(
                request,
                clients,
                send,
                progress_interval=settings.gateway_progress_interval_seconds,
                diarization_timeout=settings.gateway_diarization_timeout_seconds,
            )
            try:
                await job.run()
                metrics.JOBS.labels("completed").inc()
            except errors.ServiceError as exc:
                metrics.JOBS.labels(exc.status.lower()).inc()
                await send({"type": "error", "error": exc.message})
            except WebSocketDisconnect:
                metrics.JOBS.labels("client_gone").inc()
                raise
            except Exception:  # noqa: BLE001 - the client gets a message, the log the trace
                metrics.JOBS.labels("internal_error").inc()
                log.exception("job failed")
                await send({"type": "error", "error": "internal error; see the gateway log"})
    except WebSocketDisconnect:
        log.info("websocket client went away")
    except RuntimeError:
        # Sending on a socket the client already closed.
        log.info("websocket closed while sending")


ROUTES = [
    Route("/", index),
    Route("/health", health),
    Route("/metrics", metrics_endpoint),
    Route("/gpu", gpu),
    Route("/api/video-info", video_info, methods=["POST"]),
    Route("/api/models", models),
    Route("/api/cache/stats", cache_stats),
    Route("/api/cache/clear", cache_clear, methods=["POST"]),
    Route("/api/download-cache/stats", download_cache_stats),
    Route("/api/download-cache/clear", download_cache_clear, methods=["POST"]),
    Route("/api/diarization-cache/stats", diarization_cache_stats),
    Route("/api/diarization-cache/clear", diarization_cache_clear, methods=["POST"]),
    WebSocketRoute("/ws/transcribe", ws_transcribe),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        clients = Clients(DownloaderClient(settings.downloader_addr), AsrClient(settings.asr_addr), DiarizerClient(settings.diarizer_addr))
        yield {"clients": clients, "settings": settings}
        for client in (clients.downloader, clients.asr, clients.diarizer):
            await client.close()

    allowed_origins = [o.strip() for o in settings.gateway_allowed_origins.split(",") if o.strip()]
    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[Middleware(OriginGuard, allowed_origins=allowed_origins)],
        exception_handlers={errors.ServiceError: service_error},
    )


def run() -> None:
    """``transcription-gateway``: serve HTTP and WebSocket until SIGTERM."""
    import uvicorn

    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
        # In-flight WebSocket jobs get this long after SIGTERM.
        timeout_graceful_shutdown=int(settings.grpc_grace_seconds),
    )
