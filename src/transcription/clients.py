"""Typed async clients for the three gRPC services.

The gateway, the command-line client and other teams' services all talk to the
platform through these. Streaming calls are async iterators of the protobuf
event messages; failures arrive as `transcription.errors.ServiceError`
subclasses carrying the server's message.

    async with DownloaderClient("127.0.0.1:50051") as downloader:
        async for event in downloader.fetch("https://example.org/talk.mp3"):
            ...

Against services that listen with TLS, pass ``tls=transcription.tls.client_tls(settings)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transcription import errors
from transcription.tls import ClientTls
from transcription.v1 import (
    asr_pb2,
    asr_pb2_grpc,
    common_pb2,
    diarizer_pb2,
    diarizer_pb2_grpc,
    downloader_pb2,
    downloader_pb2_grpc,
)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
UPLOAD_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)


def _translate(exc: grpc.aio.AioRpcError, service: str) -> errors.ServiceError:
    code = exc.code()
    message = exc.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in message.lower():
        return errors.ServiceUnreachable(f"the {service} service is unavailable")
    if code == grpc.StatusCode.UNAVAILABLE and "handshake failed" in message.lower():
        # Certificates that do not fit (GRPC_TLS_*): the operator needs gRPC's reason, the caller only that it failed.
        log.warning("TLS handshake with the %s service failed: %s", service, message)
        return errors.ServiceUnreachable(f"the {service} service is unavailable (TLS handshake failed)")
    if code == grpc.StatusCode.UNAVAILABLE and errors.SENT_BY_SERVICE not in dict(exc.trailing_metadata() or ()):
        # gRPC's own status, not the service's answer: the connection broke mid-call (the service died) or never came up
        return errors.Unavailable(f"the connection to the {service} service failed ({message})")
    return errors.from_status(code.name, message)


def _streaming(method):
    """For methods returning a server-streaming call: iterate it, re-raising gRPC failures as `ServiceError`s.

    A consumer that stops early (closes the iterator, or is cancelled) cancels
    the call at once, so the server stops working on it too: leaving the call
    to the garbage collector would let a model decode a file nobody reads.
    """

    @functools.wraps(method)
    async def stream(self, *args, **kwargs):
        call = method(self, *args, **kwargs)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.service_name) from None
        finally:
            call.cancel()  # no-op once the call has ended

    return stream


def _translating(method):
    """Re-raise gRPC failures of a unary client method as `ServiceError`s."""

    @functools.wraps(method)
    async def unary(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.service_name) from None

    return unary


def audio_ref(audio: str | bytes | common_pb2.AudioRef) -> common_pb2.AudioRef:
    """An `AudioRef` from a content id (str), inline file bytes, or a ref."""
    if isinstance(audio, common_pb2.AudioRef):
        return audio
    if isinstance(audio, bytes):
        return common_pb2.AudioRef(inline_audio=audio)
    return common_pb2.AudioRef(content_id=audio)


def grpc_target(address: str) -> str:
    """A gRPC target for one address, several, or a name with several records.

    ``host:port`` is one service; ``10.0.0.5:50052,10.0.0.6:50052`` (IP
    addresses, comma-separated) is several replicas; any gRPC target passes
    through, e.g. ``dns:///asr-headless.transcription.svc:50052``, whose every
    address is a replica. Calls are balanced per call across them (round robin).
    """
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) < 2:
        return address.strip()
    if all(part.startswith("[") for part in parts):
        return "ipv6:" + ",".join(parts)
    if any(not part.rsplit(":", 1)[0].replace(".", "").isdigit() for part in parts):
        raise ValueError(f"several addresses must be IP:port ({address!r}); for names use one dns:/// target with several records")
    return "ipv4:" + ",".join(parts)


def replica_addresses(address: str) -> tuple[list[str], str]:
    """Each replica behind ``address`` as `grpc_target` reads it, and the name they answer to under TLS:
    the comma-separated addresses, or the records a ``dns:`` name has now (blocking: resolves). A name
    that does not resolve now is left to the channel, as one address."""
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) != 1 or not parts[0].startswith("dns:"):
        return parts, ""
    host, _, port = parts[0].rsplit("/", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return parts, ""
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return parts, ""
    return sorted({f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in (info[4][0] for info in infos)}), host


class _Client:
    service_name = ""
    grpc_service = ""

    def __init__(
        self, address: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, tls: ClientTls | None = None, server_name: str = ""
    ):
        """``tls``: `transcription.tls.client_tls(settings)`; None connects in plain text. ``server_name``: the name
        to check the server's certificate against when ``tls`` names none (one replica of a dns:/// name)."""
        self.address = address
        self._settings = {"max_message_bytes": max_message_bytes, "tls": tls}  # for `every_replica`'s clients
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            # every address behind the target gets calls in turn (one address: no difference)
            ("grpc.lb_policy_name", "round_robin"),
            # a replica that comes back is reconnected to within seconds, not minutes
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ]
        if tls is None:
            self.channel = grpc.aio.insecure_channel(grpc_target(address), options=options)
        else:
            name_options = tls.channel_options() or ([("grpc.ssl_target_name_override", server_name)] if server_name else [])
            self.channel = grpc.aio.secure_channel(grpc_target(address), tls.credentials, options=options + name_options)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def health(self, timeout: float = 2.0) -> str:
        """The service's health status name (``SERVING``, ``NOT_SERVING``, ``UNAVAILABLE``)."""
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=self.grpc_service), timeout=timeout)
        except grpc.aio.AioRpcError:
            return "UNAVAILABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def every_replica(self) -> AsyncIterator[list]:
        """A client per replica behind this one's address (just this one when there is one), for the calls that
        every replica must get, where the balanced channel would reach one of them."""
        addresses, name = await asyncio.to_thread(replica_addresses, self.address)
        if len(addresses) < 2:
            yield [self]
            return
        # under TLS a pod's certificate names the service, not the pod's IP
        replicas = [type(self)(address, **self._settings, server_name=name) for address in addresses]
        try:
            yield replicas
        finally:
            for replica in replicas:
                await replica.close()


class _CacheOwner(_Client):
    """A service that keeps a cache: both stubs have GetCacheStats and ClearCache."""

    @_translating
    async def cache_stats(self) -> common_pb2.CacheStats:
        """Of every replica, each cache counted once (replicas sharing a volume report one ``cache_id``)."""
        async with self.every_replica() as replicas:
            stats = await asyncio.gather(*(r.stub.GetCacheStats(common_pb2.CacheStatsRequest(), timeout=30) for r in replicas))
        caches = {s.cache_id or str(number): s for number, s in enumerate(stats)}.values()
        return common_pb2.CacheStats(
            total_files=sum(s.total_files for s in caches),
            total_bytes=sum(s.total_bytes for s in caches),
            metadata_files=sum(s.metadata_files for s in caches),
            cache_id=",".join(sorted(s.cache_id for s in caches)),
        )

    @_translating
    async def clear_cache(self) -> common_pb2.CacheClearResponse:
        """On every replica (a shared cache is emptied by the first; the others find nothing left)."""
        async with self.every_replica() as replicas:
            cleared = await asyncio.gather(*(r.stub.ClearCache(common_pb2.CacheClearRequest(), timeout=60) for r in replicas))
        return common_pb2.CacheClearResponse(
            files_deleted=sum(c.files_deleted for c in cleared), bytes_freed=sum(c.bytes_freed for c in cleared)
        )


class DownloaderClient(_CacheOwner):
    service_name = "downloader"
    grpc_service = "transcription.v1.Downloader"

    def __init__(self, address: str, **kwargs):
        super().__init__(address, **kwargs)
        self.stub = downloader_pb2_grpc.DownloaderStub(self.channel)

    @_streaming
    def fetch(
        self,
        url: str,
        *,
        force_refresh: bool = False,
        method: int = downloader_pb2.FETCH_METHOD_AUTO,
        timeout: float | None = None,
    ) -> AsyncIterator[downloader_pb2.FetchEvent]:
        request = downloader_pb2.FetchRequest(url=url, force_refresh=force_refresh, method=method)
        return self.stub.Fetch(request, timeout=timeout)

    @_streaming
    def iter_audio(
        self,
        content_id: str,
        *,
        offset: int = 0,
        length: int = 0,
        canonical: bool = False,
        start_seconds: float = 0.0,
        end_seconds: float = 0.0,
        chunk_size: int = 0,
    ) -> AsyncIterator[downloader_pb2.AudioChunk]:
        """Stored audio in chunks: the original file, or (``canonical``) its 16 kHz mono s16le PCM, whole or a range."""
        request = downloader_pb2.ReadAudioRequest(
            content_id=content_id,
            offset=offset,
            length=length,
            form=downloader_pb2.AUDIO_FORM_CANONICAL if canonical else downloader_pb2.AUDIO_FORM_ORIGINAL,
            start_seconds=start_seconds,
            end_seconds=end_seconds,
            chunk_size=chunk_size,
        )
        return self.stub.ReadAudio(request)

    async def canonical_size(self, content_id: str) -> int:
        """Bytes of the stored audio's canonical form (2 a sample at 16 kHz): its length, without reading it."""
        first = [chunk async for chunk in self.iter_audio(content_id, canonical=True, length=2)]
        return first[0].total_size if first else 0

    async def read_audio(self, content_id: str) -> bytes:
        """The whole original file (as downloaded)."""
        return b"".join([chunk.data async for chunk in self.iter_audio(content_id)])

    @_translating
    async def upload(self, blocks: AsyncIterator[bytes], filename: str = "", *, timeout: float | None = None) -> downloader_pb2.AudioReady:
        """Send a file to the store in chunks (client streaming: never one giant message); returns its entry."""

        async def chunks() -> AsyncIterator[downloader_pb2.UploadChunk]:
            yield downloader_pb2.UploadChunk(filename=filename)
            async for block in blocks:
                for start in range(0, len(block), UPLOAD_CHUNK):
                    yield downloader_pb2.UploadChunk(data=block[start : start + UPLOAD_CHUNK])

        return await self.stub.Upload(chunks(), timeout=timeout)

    @_translating
    async def video_info(self, url: str, *, timeout: float | None = 60) -> downloader_pb2.MediaMetadata:
        return await self.stub.GetVideoInfo(downloader_pb2.VideoInfoRequest(url=url), timeout=timeout)


class AsrClient(_CacheOwner):
    service_name = "ASR"
    grpc_service = "transcription.v1.Asr"

    def __init__(self, address: str, **kwargs):
        super().__init__(address, **kwargs)
        self.stub = asr_pb2_grpc.AsrStub(self.channel)

    @_streaming
    def transcribe(
        self,
        audio: str | bytes | common_pb2.AudioRef,
        options: asr_pb2.TranscribeOptions | None = None,
        *,
        request_id: str = "",
        skip_cache: bool = False,
        timeout: float | None = None,
        start_seconds: float = 0.0,
        end_seconds: float = 0.0,
    ) -> AsyncIterator[asr_pb2.TranscribeEvent]:
        """Transcription events; with a time range (stored audio only), of that piece, in the whole file's time."""
        request = asr_pb2.TranscribeRequest(
            audio=audio_ref(audio),
            options=options or asr_pb2.TranscribeOptions(),
            request_id=request_id,
            skip_cache=skip_cache,
            start_seconds=start_seconds,
            end_seconds=end_seconds,
        )
        return self.stub.Transcribe(request, timeout=timeout)

    @_translating
    async def list_models(self) -> asr_pb2.ListModelsResponse:
        return await self.stub.ListModels(asr_pb2.ListModelsRequest(), timeout=30)

    @_translating
    async def load_model(self, name: str, *, timeout: float | None = 900) -> asr_pb2.ModelInfo:
        return await self.stub.LoadModel(asr_pb2.ModelRequest(name=name), timeout=timeout)

    @_translating
    async def unload_model(self, name: str) -> asr_pb2.ModelInfo:
        return await self.stub.UnloadModel(asr_pb2.ModelRequest(name=name), timeout=60)

    @_translating
    async def device_info(self) -> common_pb2.DeviceInfo:
        return await self.stub.GetDeviceInfo(common_pb2.DeviceInfoRequest(), timeout=30)


class DiarizerClient(_CacheOwner):
    service_name = "diarizer"
    grpc_service = "transcription.v1.Diarizer"

    def __init__(self, address: str, **kwargs):
        super().__init__(address, **kwargs)
        self.stub = diarizer_pb2_grpc.DiarizerStub(self.channel)

    @_streaming
    def diarize(
        self,
        audio: str | bytes | common_pb2.AudioRef,
        options: diarizer_pb2.DiarizeOptions | None = None,
        *,
        request_id: str = "",
        skip_cache: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[diarizer_pb2.DiarizeEvent]:
        request = diarizer_pb2.DiarizeRequest(
            audio=audio_ref(audio), options=options or diarizer_pb2.DiarizeOptions(), request_id=request_id, skip_cache=skip_cache
        )
        return self.stub.Diarize(request, timeout=timeout)

    @_translating
    async def device_info(self) -> common_pb2.DeviceInfo:
        return await self.stub.GetDeviceInfo(common_pb2.DeviceInfoRequest(), timeout=30)


async def resolve_audio(ref: common_pb2.AudioRef, downloader: DownloaderClient) -> bytes:
    """The bytes behind an `AudioRef`: inline, or pulled from the downloader by content id."""
    kind = ref.WhichOneof("source")
    if kind == "inline_audio":
        if not ref.inline_audio:
            raise errors.InvalidArgument("inline audio is empty")
        return ref.inline_audio
    if kind != "content_id" or not ref.content_id:
        raise errors.InvalidArgument("no audio given: set audio.content_id or audio.inline_audio")
    return await downloader.read_audio(ref.content_id)
