"""gRPC transport for the downloader: maps `Fetcher` and `AudioStore` onto the proto."""

from __future__ import annotations

import asyncio

from transcription.downloader.events import CacheHit, Metadata, Progress, Ready
from transcription.downloader.fetcher import Fetcher
from transcription.downloader.netguard import AddressPolicy, install_connect_guard, parse_nat64_prefixes, parse_networks
from transcription.downloader.settings import DownloaderSettings
from transcription.downloader.store import AudioStore, check_content_id
from transcription.errors import OutOfRange
from transcription.grpc_server import rpc, run_service
from transcription.v1 import common_pb2, downloader_pb2, downloader_pb2_grpc

MAX_CHUNK = 1024 * 1024
DEFAULT_CHUNK = 256 * 1024


def _event_pb(event) -> downloader_pb2.FetchEvent:
    if isinstance(event, Progress):
        percent = 100.0 * event.bytes_done / event.bytes_total if event.bytes_total else -1.0
        return downloader_pb2.FetchEvent(
            progress=downloader_pb2.DownloadProgress(bytes_done=event.bytes_done, bytes_total=event.bytes_total, percent=round(percent, 2))
        )
    if isinstance(event, CacheHit):
        return downloader_pb2.FetchEvent(cache_hit=downloader_pb2.CacheHit(url=event.url, content_id=event.content_id))
    if isinstance(event, Metadata):
        return downloader_pb2.FetchEvent(metadata=downloader_pb2.MediaMetadata(**event.fields))
    if isinstance(event, Ready):
        a = event.audio
        return downloader_pb2.FetchEvent(
            ready=downloader_pb2.AudioReady(
                content_id=a.content_id,
                duration_seconds=a.duration_seconds,
                size_bytes=a.size_bytes,
                format=a.format,
                from_cache=event.from_cache,
            )
        )
    raise TypeError(f"unknown fetch event {event!r}")


class DownloaderServicer(downloader_pb2_grpc.DownloaderServicer):
    def __init__(self, fetcher: Fetcher, store: AudioStore):
        self.fetcher = fetcher
        self.store = store

    @rpc
    async def Fetch(self, request: downloader_pb2.FetchRequest, context):
        async for event in self.fetcher.fetch(request.url, force_refresh=request.force_refresh, method=request.method):
            yield _event_pb(event)

    @rpc
    async def ReadAudio(self, request: downloader_pb2.ReadAudioRequest, context):
        check_content_id(request.content_id)
        chunk_size = min(request.chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
        with self.store.open_audio(request.content_id) as f:
            total = f.seek(0, 2)
            if request.offset > total:
                raise OutOfRange(f"offset {request.offset} is past the end ({total} bytes)")
            end = min(total, request.offset + request.length) if request.length else total
            position = f.seek(request.offset)
            while position < end:
                data = await asyncio.to_thread(f.read, min(chunk_size, end - position))
                if not data:
                    break
                yield downloader_pb2.AudioChunk(data=data, offset=position, total_size=total)
                position += len(data)

    @rpc
    async def GetVideoInfo(self, request: downloader_pb2.VideoInfoRequest, context):
        return downloader_pb2.MediaMetadata(**await self.fetcher.video_info(request.url))

    @rpc
    async def GetCacheStats(self, request, context):
        return common_pb2.CacheStats(**await asyncio.to_thread(self.store.stats))

    @rpc
    async def ClearCache(self, request, context):
        return common_pb2.CacheClearResponse(**await asyncio.to_thread(self.store.clear))


def build(settings: DownloaderSettings) -> DownloaderServicer:
    store = AudioStore(settings.subdir("downloads"))
    policy = AddressPolicy(parse_networks(settings.downloader_allowed_networks), parse_nat64_prefixes(settings.downloader_nat64_prefixes))
    install_connect_guard(policy)  # the last word on every connection this process makes
    fetcher = Fetcher(
        store,
        policy,
        max_bytes=settings.downloader_max_bytes,
        connect_timeout=settings.downloader_connect_timeout_seconds,
        read_timeout=settings.downloader_read_timeout_seconds,
    )
    return DownloaderServicer(fetcher, store)


def run() -> None:
    """``transcription-downloader``: serve until SIGTERM."""
    run_service(
        "downloader",
        DownloaderSettings(),
        build,
        downloader_pb2_grpc.add_DownloaderServicer_to_server,
        downloader_pb2.DESCRIPTOR.services_by_name["Downloader"],
    )
