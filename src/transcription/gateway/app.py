"""Starlette routes: the WebSocket job stream, the REST API and the UI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from transcription import errors
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.gateway.jobs import Clients, Job, JobRequest
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


def error_response(exc: errors.ServiceError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=HTTP_STATUS.get(exc.status, 500))


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings()
    # gRPC aio channels belong to the event loop that creates them, so the
    # clients are made in the lifespan, on the server's loop.
    clients = Clients(None, None, None)  # type: ignore[arg-type]

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def health(request: Request):
        names = ("downloader", "asr", "diarizer")
        statuses = await asyncio.gather(*(getattr(clients, n).health() for n in names))
        services = dict(zip(names, statuses))
        healthy = all(s == "SERVING" for s in statuses)
        return JSONResponse(
            {
                "status": "healthy" if healthy else "degraded",
                "timestamp": datetime.now(UTC).isoformat(),
                "services": services,
            }
        )

    async def gpu(request: Request):
        try:
            info = await clients.asr.device_info()
        except errors.ServiceError as exc:
            return error_response(exc)
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

    async def video_info(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": 'the body must be JSON: {"url": ...}'}, status_code=400)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.strip():
            return JSONResponse({"error": "URL is required"}, status_code=400)
        try:
            m = await clients.downloader.video_info(url)
        except errors.ServiceError as exc:
            return error_response(exc)
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

    def stats_json(stats, with_metadata: bool) -> dict:
        out = {"total_files": stats.total_files, "total_size": stats.total_bytes, "total_size_mb": round(stats.total_bytes / MB, 2)}
        if with_metadata:
            out["metadata_files"] = stats.metadata_files
        return out

    def cleared_json(result) -> dict:
        return {"cleared": True, "files_deleted": result.files_deleted, "space_freed_mb": round(result.bytes_freed / MB, 2)}

    async def cache_stats(request: Request):
        try:
            return JSONResponse(stats_json(await clients.asr.cache_stats(), with_metadata=False))
        except errors.ServiceError as exc:
            return error_response(exc)

    async def cache_clear(request: Request):
        try:
            return JSONResponse(cleared_json(await clients.asr.clear_cache()))
        except errors.ServiceError as exc:
            return error_response(exc)

    async def download_cache_stats(request: Request):
        try:
            return JSONResponse(stats_json(await clients.downloader.cache_stats(), with_metadata=True))
        except errors.ServiceError as exc:
            return error_response(exc)

    async def download_cache_clear(request: Request):
        try:
            return JSONResponse(cleared_json(await clients.downloader.clear_cache()))
        except errors.ServiceError as exc:
            return error_response(exc)

    async def models(request: Request):
        try:
            reply = await clients.asr.list_models()
        except errors.ServiceError as exc:
            return error_response(exc)
        return JSONResponse(
            {
                "default_model": reply.default_model,
                "models": [
                    {"name": m.name, "available": m.available, "loaded": m.loaded, "source": m.source, "multilingual": m.multilingual}
                    for m in reply.models
                ],
            }
        )

    async def ws_transcribe(websocket: WebSocket):
        await websocket.accept()

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
                try:
                    await Job(request, clients, send, settings.gateway_progress_interval_seconds).run()
                except errors.ServiceError as exc:
                    await send({"type": "error", "error": exc.message})
                except WebSocketDisconnect:
                    raise
                except Exception:  # noqa: BLE001 - the client gets a message, the log the trace
                    log.exception("job failed")
                    await send({"type": "error", "error": "internal error; see the gateway log"})
        except WebSocketDisconnect:
            log.info("websocket client went away")
        except RuntimeError:
            # Sending on a socket the client already closed.
            log.info("websocket closed while sending")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        clients.downloader = DownloaderClient(settings.downloader_addr)
        clients.asr = AsrClient(settings.asr_addr)
        clients.diarizer = DiarizerClient(settings.diarizer_addr)
        yield
        for client in (clients.downloader, clients.asr, clients.diarizer):
            await client.close()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/gpu", gpu),
            Route("/api/video-info", video_info, methods=["POST"]),
            Route("/api/models", models),
            Route("/api/cache/stats", cache_stats),
            Route("/api/cache/clear", cache_clear, methods=["POST"]),
            Route("/api/download-cache/stats", download_cache_stats),
            Route("/api/download-cache/clear", download_cache_clear, methods=["POST"]),
            WebSocketRoute("/ws/transcribe", ws_transcribe),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        middleware=[Middleware(OriginGuard, allowed_origins=[o.strip() for o in settings.gateway_allowed_origins.split(",") if o.strip()])],
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
