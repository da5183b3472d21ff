"""Fetch a URL's audio into the store once, reporting progress as it goes.

A fetch: normalise the URL (YouTube links in all their pasted forms become
one), answer from the URL cache, or join the download already running for the
same URL and method, or start one: admitted under a concurrency limit with a
bounded queue, through yt-dlp or plain HTTP, then probed (refused past the
duration limit before anything is decoded), decoded once into the canonical
16 kHz mono PCM the models read, and stored. Blocking work runs on executors of
the downloader's own, never on the event loop and never on the default pool
that DNS resolution uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import shutil
import time
import wave
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from transcription import audio, metrics
from transcription.downloader import urls, ytdlp
from transcription.downloader.events import CacheHit, FetchEvent, Metadata, Progress, Ready
from transcription.downloader.http import SNIFF_BYTES, HttpDownload, HttpLimits, PageNotMedia, refusal, sniff
from transcription.downloader.netguard import AddressPolicy
from transcription.downloader.singleflight import SingleFlight
from transcription.downloader.store import AudioStore, StoredAudio, UrlRecord, room_to_write, url_key
from transcription.errors import InvalidArgument, ServiceError, Unavailable
from transcription.files import sha256_file
from transcription.threads import Admission
from transcription.v1 import downloader_pb2

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.2
PEEK_BYTES = 256 * 1024  # enough for the headers of common formats (duration of WAV, FLAC, MP3 with a Xing header...)
METHOD_NAMES = {
    downloader_pb2.FETCH_METHOD_AUTO: "auto",
    downloader_pb2.FETCH_METHOD_DIRECT: "direct",
    downloader_pb2.FETCH_METHOD_YTDLP: "ytdlp",
}


@dataclass(frozen=True)
class _Downloaded:
    """Internal last event of a download route: the file, its sha256 and what the source said of it."""

    path: Path
    content_id: str
    metadata: dict


def _duration_from_head(head: bytes, whole: bool) -> float:
    """Duration from a file's first bytes where its header says it; 0 when they cannot tell."""
    if head.startswith(b"RIFF"):  # WAV: the data chunk's declared size (PyAV would measure the bytes at hand)
        with contextlib.suppress(wave.Error, EOFError):
            with wave.open(io.BytesIO(head)) as w:
                return w.getnframes() / w.getframerate()
    try:
        probe = audio.probe(head)
    except ServiceError:
        return 0.0  # not media, or not in the first bytes: the fetch will say
    # FLAC's STREAMINFO holds the sample count; other formats are estimated from the bytes at hand
    return probe.duration_seconds if whole or probe.format == "flac" else 0.0


def _title_from_url(url: str) -> str:
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name or urlsplit(url).hostname or url


class Fetcher:
    def __init__(
        self,
        store: AudioStore,
        policy: AddressPolicy,
        limits: HttpLimits,
        *,
        max_duration_seconds: float,
        admission: Admission,
        work_executor: Executor,
        ytdlp_executor: Executor,
        bookkeeping_executor: Executor | None = None,
        ytdlp_cache_dir: Path | None = None,
    ):
        self.store = store
        self.policy = policy
        self.limits = limits
        self.max_duration_seconds = max_duration_seconds
        self.admission = admission
        self.work_executor = work_executor  # hashing, probing, decoding, file writes
        self.ytdlp_executor = ytdlp_executor  # one thread per running yt-dlp job
        self.bookkeeping_executor = bookkeeping_executor or work_executor  # small store reads (the URL cache)
        self.ytdlp_cache_dir = ytdlp_cache_dir
        self.flights: SingleFlight[FetchEvent] = SingleFlight(is_progress=lambda event: isinstance(event, Progress))

    async def _work(self, function: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self.work_executor, function, *args)

    async def _bookkeeping(self, function: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self.bookkeeping_executor, function, *args)

    # -- public ----------------------------------------------------------

    async def fetch(
        self, url: str, *, force_refresh: bool = False, method: int = downloader_pb2.FETCH_METHOD_AUTO
    ) -> AsyncIterator[FetchEvent]:
        url = urls.normalise(url)
        if not url:
            raise InvalidArgument("a URL is required")
        if method not in METHOD_NAMES:
            raise InvalidArgument(f"unknown fetch method {method}")
        self.policy.check_url(url)
        key = url_key(url, METHOD_NAMES[method])

        if not force_refresh:
            cached = await self._bookkeeping(self.store.lookup_url, key)  # a hit never waits behind a download
            metrics.CACHE.labels("downloader", "urls", "hit" if cached else "miss").inc()
            if cached:
                record, stored = cached
                log.info("cache hit for %s -> %s", urls.redact(url), stored.content_id)
                yield CacheHit(record.url, stored.content_id)
                yield Metadata(record.metadata)
                yield Ready(stored, from_cache=True)
                return

        # force_refresh joins a download already running: it is as fresh as can be
        async for event in self.flights.join(key, lambda: self._download(url, method, key)):
            yield event

    async def upload(self, blocks: AsyncIterator[bytes]) -> StoredAudio:
        """Store a file sent by a client: size-limited, sniffed, probed and decoded like a download."""
        with room_to_write():
            async with self.admission.reserve(), self.admission.slot():
                tmp = self.store.new_tmp_file()
                try:
                    digest = hashlib.sha256()
                    size = 0
                    with tmp.open("wb") as out:
                        async for block in blocks:
                            if not size and (what := sniff("", block[:SNIFF_BYTES])):
                                raise InvalidArgument(f"the file is {what}, not audio or video")
                            size += len(block)
                            if size > self.limits.max_bytes:
                                raise InvalidArgument(f"the file is larger than the {self.limits.max_bytes}-byte limit")
                            await self._work(lambda b=block: (digest.update(b), out.write(b)))
                    if not size:
                        raise InvalidArgument("the uploaded file is empty")
                    content_id = digest.hexdigest()
                    with self.store.pinned(content_id):
                        return await self._work(self.store.get, content_id) or await self._add(tmp, content_id)
                finally:
                    tmp.unlink(missing_ok=True)  # no-op once moved into the store

    async def video_info(self, url: str) -> dict:
        """What a URL holds (title, duration, thumbnail, ...), without downloading it.

        Sites yt-dlp knows, and pages, are asked of yt-dlp; a direct media link is
        judged from its first bytes (PEEK_BYTES): name and, where the header says,
        duration. yt-dlp's generic extractor would fetch the whole file.
        """
        url = urls.normalise(url)
        host = self.policy.check_url(url)
        loop = asyncio.get_running_loop()
        if not await self._work(ytdlp.has_site_extractor, url):
            content_type, head = await HttpDownload(url, Path(), self.policy, self.limits, self.work_executor).peek(PEEK_BYTES)
            what = sniff(content_type, head[:SNIFF_BYTES])
            if what is None:
                duration = await self._work(_duration_from_head, head, len(head) < PEEK_BYTES)
                title = _title_from_url(url).rsplit(".", 1)[0] or _title_from_url(url)  # as yt-dlp names a file: no extension
                return {"title": title, "duration_seconds": duration, "webpage_url": urls.redact(url), "extractor": "direct"}
            if not isinstance(error := refusal(what), PageNotMedia):
                raise error
        await loop.run_in_executor(self.ytdlp_executor, self.policy.resolve_and_check, host)
        return await loop.run_in_executor(self.ytdlp_executor, lambda: ytdlp.extract_info(url, cache_dir=self.ytdlp_cache_dir))

    # -- one download, shared by every caller --------------------------------

    async def _download(self, url: str, method: int, key: str) -> AsyncIterator[FetchEvent]:
        with room_to_write():
            async with self.admission.reserve(), self.admission.slot():
                log.info("fetching %s (%s)", urls.redact(url), METHOD_NAMES[method])
                use_ytdlp = method == downloader_pb2.FETCH_METHOD_YTDLP or (
                    method == downloader_pb2.FETCH_METHOD_AUTO and await self._work(ytdlp.has_site_extractor, url)
                )
                route = (
                    self._via_ytdlp(url)
                    if use_ytdlp
                    else self._via_http(url, fall_back_to_ytdlp=method == downloader_pb2.FETCH_METHOD_AUTO)
                )
                async with contextlib.aclosing(route):  # its temporary files go as soon as this ends, even on error
                    async for event in route:
                        if isinstance(event, _Downloaded):
                            async for stored_event in self._store(event, url, key, method):
                                yield stored_event
                        else:
                            yield event

    async def _store(self, downloaded: _Downloaded, url: str, key: str, method: int) -> AsyncIterator[FetchEvent]:
        """Probe, check the duration, decode the canonical form, and move both into the store."""
        content_id = downloaded.content_id
        with self.store.pinned(content_id):
            stored = await self._work(self.store.get, content_id)
            if stored is None:  # new bytes (the same bytes under another URL are stored once)
                stored = await self._add(downloaded.path, content_id)
            metadata = {
                **downloaded.metadata,
                "duration_seconds": downloaded.metadata.get("duration_seconds") or stored.duration_seconds,
                "webpage_url": urls.redact(downloaded.metadata.get("webpage_url") or url),  # stored and shown: no secrets
            }
            record = UrlRecord(url=urls.redact(url), content_id=content_id, method=METHOD_NAMES[method], metadata=metadata)
            await self._work(self.store.remember_url, key, record)
        yield Metadata(metadata)
        yield Ready(stored, from_cache=False)

    async def _add(self, original: Path, content_id: str) -> StoredAudio:
        try:
            probe = await self._work(audio.probe, original)
        except ServiceError as exc:
            # say what it is when the bytes tell (yt-dlp may have fetched a page as a "direct" file)
            head = await self._work(_head, original)
            if not head:
                raise InvalidArgument("the file is empty (0 bytes)") from exc
            if what := sniff("", head):
                raise InvalidArgument(f"the file is {what}, not audio or video") from exc
            raise InvalidArgument(f"this is not audio or video: {exc.message}") from exc
        if probe.duration_seconds > self.max_duration_seconds:
            raise InvalidArgument(
                f"the audio is {audio.format_duration(probe.duration_seconds)} long, over the"
                f" {audio.format_duration(self.max_duration_seconds)} limit"
            )
        canonical = self.store.new_tmp_file(suffix=".pcm")
        try:
            with canonical.open("wb") as out:
                samples = await self._work(audio.write_canonical, original, out, self.max_duration_seconds)
            duration = probe.duration_seconds or samples / audio.SAMPLE_RATE
            return await self._work(self.store.add, original, canonical, content_id, probe.format, duration)
        finally:
            canonical.unlink(missing_ok=True)  # no-op once moved into the store

    # -- plain HTTP ------------------------------------------------------

    async def _via_http(self, url: str, *, fall_back_to_ytdlp: bool) -> AsyncIterator[FetchEvent | _Downloaded]:
        tmp = self.store.new_tmp_file()
        try:
            download = HttpDownload(url, tmp, self.policy, self.limits, self.work_executor)
            try:
                async for progress in download.run():
                    yield progress
            except PageNotMedia as page:
                if not fall_back_to_ytdlp:
                    raise
                log.info("%s is a page, not media: trying yt-dlp's generic extractor", urls.redact(url))
                async with contextlib.aclosing(self._via_ytdlp(url, page=page)) as events:
                    async for event in events:
                        yield event
                return
            yield _Downloaded(tmp, download.sha256, {"title": _title_from_url(url), "webpage_url": urls.redact(url), "extractor": "direct"})
        finally:
            tmp.unlink(missing_ok=True)  # no-op once moved into the store

    # -- yt-dlp ----------------------------------------------------------

    async def _via_ytdlp(self, url: str, page: PageNotMedia | None = None) -> AsyncIterator[FetchEvent | _Downloaded]:
        """yt-dlp, trying the other forms of a YouTube URL when the first fails."""
        candidates = [url, *urls.alternatives(url)]
        for number, candidate in enumerate(candidates, 1):
            try:
                async with contextlib.aclosing(self._ytdlp_once(candidate)) as events:
                    async for event in events:
                        yield event
                return
            except Unavailable as exc:
                if number == len(candidates):
                    raise
                log.info("yt-dlp failed for %s (%s); trying %s", urls.redact(candidate), exc.message, urls.redact(candidates[number]))
            except InvalidArgument as exc:
                if page is not None and "no audio found" in exc.message:
                    raise InvalidArgument(f"{page.message}, and yt-dlp found no media in it") from exc
                raise

    async def _ytdlp_once(self, url: str) -> AsyncIterator[FetchEvent | _Downloaded]:
        host = self.policy.check_url(url)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.ytdlp_executor, self.policy.resolve_and_check, host)
        queue: asyncio.Queue[Progress] = asyncio.Queue()
        stop = False
        last_report = 0.0

        def on_progress(done: int, total: int) -> None:
            nonlocal last_report
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                last_report = now
                loop.call_soon_threadsafe(queue.put_nowait, Progress(done, total))

        work_dir = self.store.new_tmp_dir()

        def run() -> tuple[Path, dict]:
            return ytdlp.download(
                url,
                work_dir,
                self.limits.max_bytes,
                on_progress,
                lambda: stop,
                cache_dir=self.ytdlp_cache_dir,
                max_duration_seconds=self.max_duration_seconds,
            )

        job = loop.run_in_executor(self.ytdlp_executor, run)
        try:
            while not job.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                try:
                    await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    got = getter.done()
                    if not got:  # the job ended first, or this stream was cancelled
                        getter.cancel()
                if got:
                    yield getter.result()
            media_file, metadata = job.result()
            size = media_file.stat().st_size
            yield Progress(size, size)
            content_id = await self._work(sha256_file, media_file)
            yield _Downloaded(media_file, content_id, metadata)
        finally:
            stop = True  # tells a still-running yt-dlp (everyone went away) to give up
            if not job.done():
                await asyncio.wait({job})
            await self._work(shutil.rmtree, work_dir, True)


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_BYTES)
