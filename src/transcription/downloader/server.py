"""gRPC transport for the downloader: maps `Fetcher` and `AudioStore` onto the proto."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, ThreadPoolExecutor

from transcription import audio
from transcription.downloader.events import CacheHit, Metadata, Progress, Ready
from transcription.downloader.fetcher import Fetcher
from transcription.downloader.http import HttpLimits
from transcription.downloader.netguard import AddressPolicy, install_connect_guard, parse_nat64_prefixes, parse_networks
from transcription.downloader.settings import DownloaderSettings
from transcription.downloader.store import AudioStore, check_content_id
from transcription.errors import InvalidArgument, OutOfRange
from transcription.grpc_server import rpc, run_service
from transcription.threads import Admission
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
                canonical_size_bytes=a.canonical_size_bytes,
            )
        )
    raise TypeError(f"unknown fetch event {event!r}")


class DownloaderServicer(downloader_pb2_grpc.DownloaderServicer):
    def __init__(self, fetcher: Fetcher, store: AudioStore, read_executor: Executor):
        self.fetcher = fetcher
        self.store = store
        self.read_executor = read_executor  # ReadAudio and cache bookkeeping: never behind a download

    async def _read(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.read_executor, function, *args)

    @rpc
    async def Fetch(self, request: downloader_pb2.FetchRequest, context):
        async for event in self.fetcher.fetch(request.url, force_refresh=request.force_refresh, method=request.method):
            yield _event_pb(event)

    @rpc
    async def ReadAudio(self, request: downloader_pb2.ReadAudioRequest, context):
        check_content_id(request.content_id)
        canonical = request.form == downloader_pb2.AUDIO_FORM_CANONICAL
        chunk_size = min(request.chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
        _check_range(request, canonical)  # before the lookup: a bad request is bad whether or not the audio exists
        with self.store.open_audio(request.content_id, canonical=canonical) as f:
            total = await self._read(f.seek, 0, 2)
            start, end = _byte_range(request, total)
            position = await self._read(f.seek, start)
            while position < end:
                data = await self._read(f.read, min(chunk_size, end - position))
                if not data:
                    break
                yield downloader_pb2.AudioChunk(data=data, offset=position, total_size=total)
                position += len(data)

    @rpc
    async def Upload(self, request_iterator, context):
        async def blocks():
            async for chunk in request_iterator:
                if chunk.data:
                    yield chunk.data

        stored = await self.fetcher.upload(blocks())
        return downloader_pb2.AudioReady(
            content_id=stored.content_id,
            duration_seconds=stored.duration_seconds,
            size_bytes=stored.size_bytes,
            format=stored.format,
            canonical_size_bytes=stored.canonical_size_bytes,
        )

    @rpc
    async def GetVideoInfo(self, request: downloader_pb2.VideoInfoRequest, context):
        return downloader_pb2.MediaMetadata(**await self.fetcher.video_info(request.url))

    @rpc
    async def GetCacheStats(self, request, context):
        return common_pb2.CacheStats(**await self._read(self.store.stats))

    @rpc
    async def ClearCache(self, request, context):
        return common_pb2.CacheClearResponse(**await self._read(self.store.clear))


def _check_range(request: downloader_pb2.ReadAudioRequest, canonical: bool) -> None:
    if request.start_seconds or request.end_seconds:
        if not canonical:
            raise InvalidArgument("a time range needs form AUDIO_FORM_CANONICAL (the original's bytes do not map to times)")
        if request.offset or request.length:
            raise InvalidArgument("give a byte range or a time range, not both")
        if request.start_seconds < 0 or request.end_seconds < 0 or (request.end_seconds and request.end_seconds < request.start_seconds):
            raise InvalidArgument("the time range must satisfy 0 <= start_seconds <= end_seconds")


def _byte_range(request: downloader_pb2.ReadAudioRequest, total: int) -> tuple[int, int]:
    """[start, end) in bytes of the requested form, from a byte range or (canonical only) a time range."""
    if request.start_seconds or request.end_seconds:
        bytes_per_second = audio.CANONICAL_BYTES_PER_SECOND
        start = 2 * round(request.start_seconds * bytes_per_second / 2)
        end = min(total, 2 * round(request.end_seconds * bytes_per_second / 2)) if request.end_seconds else total
    else:
        start = request.offset
        end = min(total, request.offset + request.length) if request.length else total
    if start > total:
        raise OutOfRange(f"the range starts past the end ({total} bytes)")
    return start, end


def build_fetcher(settings: DownloaderSettings) -> Fetcher:
    """The fetcher and its store as the settings describe them (without the process-wide connect guard)."""
    store = AudioStore(
        settings.subdir("downloads"),
        max_bytes=settings.downloader_store_max_bytes,
        max_age_seconds=settings.downloader_store_max_age_seconds,
    )
    policy = AddressPolicy(parse_networks(settings.downloader_allowed_networks), parse_nat64_prefixes(settings.downloader_nat64_prefixes))
    limits = HttpLimits(
        max_bytes=settings.downloader_max_bytes,
        connect_timeout=settings.downloader_connect_timeout_seconds,
        read_timeout=settings.downloader_read_timeout_seconds,
        total_timeout=settings.downloader_total_timeout_seconds,
        min_bytes_per_second=settings.downloader_min_bytes_per_second,
        rate_window_seconds=settings.downloader_rate_window_seconds,
        retries=settings.downloader_retries,
        max_retry_wait_seconds=settings.downloader_max_retry_wait_seconds,
    )
    concurrent = settings.downloader_max_concurrent
    return Fetcher(
        store,
        policy,
        limits,
        max_duration_seconds=settings.downloader_max_duration_seconds,
        admission=Admission(concurrent, settings.downloader_max_queued, "downloader"),
        # a download holds at most one work item at a time (a write, a hash, a decode)
        work_executor=ThreadPoolExecutor(concurrent, thread_name_prefix="download-work"),
        ytdlp_executor=ThreadPoolExecutor(concurrent + 2, thread_name_prefix="yt-dlp"),  # +2: GetVideoInfo
        # ReadAudio, the URL cache and stats: a pool of their own, never behind a download
        bookkeeping_executor=ThreadPoolExecutor(settings.downloader_read_threads, thread_name_prefix="read-audio"),
        ytdlp_cache_dir=settings.subdir("yt-dlp-cache"),
    )


def build(settings: DownloaderSettings) -> DownloaderServicer:
    fetcher = build_fetcher(settings)
    install_connect_guard(fetcher.policy)  # the last word on every connection this process makes
    return DownloaderServicer(fetcher, fetcher.store, fetcher.bookkeeping_executor)


def run() -> None:
    """``transcription-downloader``: serve until SIGTERM."""
    run_service(
        "downloader",
        DownloaderSettings(),
        build,
        downloader_pb2_grpc.add_DownloaderServicer_to_server,
        downloader_pb2.DESCRIPTOR.services_by_name["Downloader"],
    )
