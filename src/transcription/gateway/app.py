"""Starlette routes: the WebSocket job stream, the REST API and the UI.

Module-level endpoints; the gRPC clients and the other per-process state live
in the lifespan state (``request.state``) because grpc.aio channels belong to
the event loop that creates them. Errors become HTTP statuses with JSON bodies
in one exception handler per error type (`EXCEPTION_HANDLERS`). Who may call
what (hosts, token, rates, sizes, headers) is security.py; the media routes
(upload, audio with Range, exports) are media.py; the OpenAI-compatible API is
openai_api.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import prometheus_client
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from transcription import errors, metrics
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.gateway import media, openai_api, state
from transcription.gateway.jobs import BACKEND_NAMES, EXPORT_FORMATS, Clients, Fanout, Job, JobRequest, unknown_fields
from transcription.gateway.origin import OriginGuard
from transcription.gateway.security import (
    HostGuard,
    RateLimiter,
    SecurityHeaders,
    TokenGuard,
    accepted_subprotocol,
    default_allowed_hosts,
    read_json,
    sign_url,
    token_matches,
)
from transcription.gateway.settings import GatewaySettings
from transcription.gateway.state import Shared, limit_rate
from transcription.log import configure as configure_logging
from transcription.tls import TlsConfigError, client_tls

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


def _error_response(request: Request, message: str, status_code: int) -> JSONResponse:
    if request.url.path.startswith("/v1/"):  # the OpenAI API's error shape, which its SDKs read
        kind = "invalid_request_error" if status_code < 500 else "server_error"
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status_code=status_code)
    return JSONResponse({"error": message}, status_code=status_code)


async def service_error(request: Request, exc: errors.ServiceError) -> JSONResponse:
    return _error_response(request, exc.message, HTTP_STATUS.get(exc.status, 500))


async def payload_too_large(request: Request, exc: errors.PayloadTooLarge) -> JSONResponse:
    return _error_response(request, exc.message, 413)


async def rate_limited(request: Request, exc: errors.ResourceExhausted) -> JSONResponse:
    response = _error_response(request, exc.message, 429)
    response.headers["Retry-After"] = "60"
    return response


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (unknown path, wrong method) in the same JSON shape as ours."""
    response = _error_response(request, exc.detail, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


EXCEPTION_HANDLERS = {
    HTTPException: http_error,
    errors.PayloadTooLarge: payload_too_large,
    errors.ResourceExhausted: rate_limited,
    errors.ServiceError: service_error,
}


# -- pages and status ------------------------------------------------------------


async def index(request: Request):
    return FileResponse(STATIC / "index.html")


async def config(request: Request):
    """What the page needs to know before it asks for anything: whether to ask for a token, the limits."""
    settings = state.settings(request)
    return JSONResponse(
        {
            "auth_required": bool(settings.gateway_api_token.get_secret_value()),
            "max_upload_bytes": settings.gateway_max_upload_bytes,
            "export_formats": list(EXPORT_FORMATS),
        }
    )


async def health(request: Request):
    clients = state.clients(request)
    names = ("downloader", "asr", "diarizer")
    statuses = await asyncio.gather(*(getattr(clients, n).health() for n in names))
    healthy = all(s == "SERVING" for s in statuses)
    return JSONResponse(
        {"status": "healthy" if healthy else "degraded", "timestamp": datetime.now(UTC).isoformat(), "services": dict(zip(names, statuses))}
    )


async def gpu(request: Request):
    info = await state.clients(request).asr.device_info()
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
    reply = await state.clients(request).asr.list_models()
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
    body = await read_json(request, state.settings(request).gateway_max_message_bytes)
    if not isinstance(body, dict):
        raise errors.InvalidArgument('the body must be a JSON object: {"url": ...}')
    url = body.get("url")
    if url is not None and not isinstance(url, str):
        raise errors.InvalidArgument("url must be a string")
    if not url or not url.strip():
        raise errors.InvalidArgument("URL is required")
    limit_rate(request)
    downloader = await state.connected(request, state.clients(request).downloader)
    m = await downloader.video_info(url)
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
    return JSONResponse(_stats_json(await state.clients(request).asr.cache_stats()))


async def cache_clear(request: Request):
    return JSONResponse(_cleared_json(await state.clients(request).asr.clear_cache()))


async def download_cache_stats(request: Request):
    return JSONResponse(_stats_json(await state.clients(request).downloader.cache_stats(), with_metadata=True))


async def download_cache_clear(request: Request):
    return JSONResponse(_cleared_json(await state.clients(request).downloader.clear_cache()))


async def diarization_cache_stats(request: Request):
    return JSONResponse(_stats_json(await state.clients(request).diarizer.cache_stats()))


async def diarization_cache_clear(request: Request):
    return JSONResponse(_cleared_json(await state.clients(request).diarizer.clear_cache()))


# -- the job stream ------------------------------------------------------------------


async def metrics_endpoint(request: Request):
    metrics.GATEWAY_TASKS.set(len(asyncio.all_tasks()))  # this scrape's own task included
    metrics.GATEWAY_THREADS.set(threading.active_count())
    return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)


async def ws_transcribe(websocket: WebSocket):
    shared, settings = state.shared(websocket), state.settings(websocket)
    await websocket.accept(subprotocol=accepted_subprotocol(websocket.scope))
    if shared.sessions >= settings.gateway_max_sessions:
        busy = "too many open sessions on this gateway; try again shortly"
        await websocket.send_json({"type": "error", "error": busy})
        # 1013: try again later. The reason too: a client whose request crossed this close sees only the close frame.
        await websocket.close(code=1013, reason=busy)
        return
    shared.sessions += 1
    try:
        with metrics.SESSIONS.track_inprogress():
            await _Session(websocket).serve()
    finally:
        shared.sessions -= 1


class _Session:
    """One WebSocket: jobs one after another; while one runs, a ``cancel`` message (or closing the socket) stops it."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.settings = state.settings(websocket)
        token = self.settings.gateway_api_token.get_secret_value()
        self.authenticated = not token or websocket.scope["state"].get("authenticated", False)
        self.token = token
        self.pending: asyncio.Task | None = None  # a receive() in progress, kept across jobs (cancelling it could lose a message)

    async def send(self, message: dict) -> None:
        await self.websocket.send_json(message)

    async def receive(self) -> dict | None:
        """The next request message as JSON, or None after answering a bad one; raises on disconnect."""
        self.pending = self.pending or asyncio.ensure_future(self.websocket.receive())
        message = await self.pending
        self.pending = None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            await self.send({"type": "error", "error": "send the request as a JSON text message"})
            return None
        if len(text.encode()) > self.settings.gateway_max_message_bytes:
            await self.send({"type": "error", "error": f"the message is larger than {self.settings.gateway_max_message_bytes} bytes"})
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            await self.send({"type": "error", "error": "the request must be JSON"})
            return None
        if not isinstance(data, dict):
            await self.send({"type": "error", "error": "the request must be a JSON object"})
            return None
        return data

    async def serve(self) -> None:
        try:
            while True:
                data = await self.receive()
                if data is None:
                    continue
                if not self.authenticated:
                    await self._authenticate(data)
                    continue
                if data.get("type") == "cancel":
                    await self.send({"type": "error", "error": "no job is running on this connection"})
                    continue
                await self._run_job(data)
        except WebSocketDisconnect:
            log.info("websocket client went away")
        except RuntimeError:
            log.info("websocket closed while sending")  # sending on a socket the client already closed
        finally:
            if self.pending is not None:
                self.pending.cancel()

    async def _authenticate(self, data: dict) -> None:
        if data.get("type") == "auth" and token_matches(str(data.get("token", "")), self.token):
            self.authenticated = True
            await self.send({"type": "status", "message": "Authenticated"})
            return
        await self.send({"type": "error", "error": 'this gateway needs its API token: send {"type": "auth", "token": ...} first'})
        await self.websocket.close(code=1008)
        raise WebSocketDisconnect(1008)

    async def _run_job(self, data: dict) -> None:
        shared = state.shared(self.websocket)
        try:
            request = JobRequest.from_message(data)
            limit_rate(self.websocket)
        except errors.ServiceError as exc:
            await self.send({"type": "error", "error": exc.message})
            return
        if ignored := unknown_fields(data):  # a typo ("modle") must not pass unnoticed
            await self.send({"type": "warning", "code": "unknown_fields", "message": f"ignored unknown fields: {', '.join(ignored)}"})
        job = Job(
            request,
            state.clients(self.websocket),
            self.send,
            progress_interval=self.settings.gateway_progress_interval_seconds,
            diarization_timeout=self.settings.gateway_diarization_timeout_seconds,
            connect_timeout=self.settings.gateway_connect_timeout_seconds,
            link=functools.partial(sign_url, token=self.token),
            fanout=Fanout(
                self.settings.gateway_fanout_min_seconds, self.settings.gateway_fanout_piece_seconds, self.settings.gateway_fanout_parallel
            ),
        )
        running = asyncio.ensure_future(job.run())
        try:
            while not running.done():
                self.pending = self.pending or asyncio.ensure_future(self.websocket.receive())
                await asyncio.wait({running, self.pending}, return_when=asyncio.FIRST_COMPLETED)
                if self.pending.done() and not running.done():
                    message = self.pending.result()
                    self.pending = None
                    if message["type"] == "websocket.disconnect":
                        raise WebSocketDisconnect(message.get("code", 1000))
                    if _is_cancel(message):
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await running
                        metrics.JOBS.labels("cancelled").inc()
                        await self.send({"type": "cancelled", "message": "Transcription cancelled"})
                        return
                    await self.send({"type": "error", "error": 'a job is already running; send {"type": "cancel"} to stop it'})
            running.result()
            shared.transcripts[job.job_id] = job.transcript()
            while len(shared.transcripts) > self.settings.gateway_transcripts_kept:
                shared.transcripts.popitem(last=False)
            metrics.JOBS.labels("completed").inc()
        except errors.ServiceError as exc:
            metrics.JOBS.labels(exc.status.lower()).inc()
            await self.send({"type": "error", "error": exc.message})
        except WebSocketDisconnect:
            metrics.JOBS.labels("client_gone").inc()
            raise
        except Exception:  # noqa: BLE001 - the client gets a message, the log the trace
            metrics.JOBS.labels("internal_error").inc()
            log.exception("job failed")
            await self.send({"type": "error", "error": "internal error; see the gateway log"})
        finally:
            if not running.done():  # the client went away: stop the downstream calls now
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running


def _is_cancel(message: dict) -> bool:
    try:
        return json.loads(message.get("text") or "null").get("type") == "cancel"
    except (json.JSONDecodeError, AttributeError):
        return False


ROUTES = [
    Route("/", index),
    Route("/api/config", config),
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
    Route("/api/upload", media.upload, methods=["POST"]),
    Route("/api/audio/{content_id:str}.wav", media.audio),
    Route("/api/transcripts/{job_id:str}.{fmt:str}", media.export),
    Route("/v1/audio/transcriptions", openai_api.transcriptions, methods=["POST"]),
    Route("/v1/audio/translations", openai_api.translations, methods=["POST"]),
    Route("/v1/models", openai_api.list_models),
    WebSocketRoute("/ws/transcribe", ws_transcribe),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings()
    tls = client_tls(settings)  # here, not in the lifespan: a TLS misconfiguration stops the start

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        clients = Clients(
            DownloaderClient(settings.downloader_addr, tls=tls),
            AsrClient(settings.asr_addr, tls=tls),
            DiarizerClient(settings.diarizer_addr, tls=tls),
        )
        # (Starlette copies this dict into each request's state: mutable things go in `Shared`)
        yield {"clients": clients, "settings": settings, "shared": Shared(RateLimiter(settings.gateway_rate_limit_per_minute))}
        for client in (clients.downloader, clients.asr, clients.diarizer):
            await client.close()

    allowed_origins = [o.strip() for o in settings.gateway_allowed_origins.split(",") if o.strip()]
    allowed_hosts = [h.strip() for h in settings.gateway_allowed_hosts.split(",") if h.strip()]
    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[  # outermost first
            Middleware(SecurityHeaders),
            Middleware(HostGuard, allowed_hosts=allowed_hosts or default_allowed_hosts(settings.gateway_host), www_redirect=False),
            Middleware(OriginGuard, allowed_origins=allowed_origins),
            Middleware(TokenGuard, token=settings.gateway_api_token.get_secret_value()),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )


def run() -> None:
    """``transcription-gateway``: serve HTTP and WebSocket until SIGTERM."""
    import uvicorn

    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, secrets_from=settings)
    try:
        app = create_app(settings)
    except TlsConfigError as error:
        raise SystemExit(f"gateway cannot start: {error}") from None
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
        # In-flight WebSocket jobs get this long after SIGTERM.
        timeout_graceful_shutdown=int(settings.grpc_grace_seconds),
        ws_max_size=settings.gateway_max_message_bytes,  # a larger frame closes the socket (1009) before it is buffered
        server_header=False,
    )
