"""Fetch a URL's audio into the store, reporting progress as it goes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from transcription import audio, metrics
from transcription.downloader import ytdlp
from transcription.downloader.events import CacheHit, FetchEvent, Metadata, Progress, Ready
from transcription.downloader.netguard import AddressPolicy, GuardedResolver, RefusedAddress
from transcription.downloader.store import AudioStore, StoredAudio
from transcription.errors import InvalidArgument, ServiceError, Unavailable
from transcription.files import sha256_file
from transcription.v1 import downloader_pb2

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_REDIRECTS = 10
PROGRESS_INTERVAL_SECONDS = 0.2


def _title_from_url(url: str) -> str:
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name or urlsplit(url).hostname or url


class Fetcher:
    def __init__(
        self,
        store: AudioStore,
        policy: AddressPolicy,
        *,
        max_bytes: int,
        connect_timeout: float,
        read_timeout: float,
    ):
        self.store = store
        self.policy = policy
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    # -- public ----------------------------------------------------------

    async def fetch(
        self, url: str, *, force_refresh: bool = False, method: int = downloader_pb2.FETCH_METHOD_AUTO
    ) -> AsyncIterator[FetchEvent]:
        url = url.strip()
        if not url:
            raise InvalidArgument("a URL is required")
        self.policy.check_url(url)

        if not force_refresh:
            cached = self.store.lookup_url(url)
            metrics.CACHE.labels("downloader", "urls", "hit" if cached else "miss").inc()
            if cached:
                record, stored = cached
                log.info("cache hit for %s -> %s", url, stored.content_id)
                yield CacheHit(url, stored.content_id)
                yield Metadata(record.metadata)
                yield Ready(stored, from_cache=True)
                return

        use_ytdlp = method == downloader_pb2.FETCH_METHOD_YTDLP or (
            method == downloader_pb2.FETCH_METHOD_AUTO and await asyncio.to_thread(ytdlp.has_site_extractor, url)
        )
        source = self._via_ytdlp(url) if use_ytdlp else self._via_http(url)
        async for event in source:
            yield event

    async def video_info(self, url: str) -> dict:
        host = self.policy.check_url(url.strip())
        await asyncio.to_thread(self.policy.resolve_and_check, host)
        return await asyncio.to_thread(ytdlp.extract_info, url.strip())

    # -- plain HTTP ------------------------------------------------------

    async def _via_http(self, url: str) -> AsyncIterator[FetchEvent]:
        tmp = self.store.new_tmp_file()
        try:
            digest = hashlib.sha256()
            async for event in self._download(url, tmp, digest):
                yield event
            metadata, stored = await self._finish(
                tmp, digest.hexdigest(), {"title": _title_from_url(url), "webpage_url": url, "extractor": "direct"}
            )
            self.store.remember_url(url, stored.content_id, metadata)
            yield Metadata(metadata)
            yield Ready(stored, from_cache=False)
        finally:
            tmp.unlink(missing_ok=True)  # no-op once moved into the store

    async def _download(self, url: str, tmp: Path, digest) -> AsyncIterator[Progress]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy))
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            response = await self._get_following_redirects(session, url)
            async with response:
                total = response.content_length or 0
                if total > self.max_bytes:
                    raise InvalidArgument(f"the file is {total} bytes, larger than the {self.max_bytes}-byte limit")
                done = 0
                last_report = 0.0
                yield Progress(0, total)
                with tmp.open("wb") as out:
                    try:
                        async for block in response.content.iter_chunked(CHUNK):
                            done += len(block)
                            if done > self.max_bytes:
                                raise InvalidArgument(f"the download exceeded the {self.max_bytes}-byte limit")
                            digest.update(block)
                            out.write(block)
                            now = time.monotonic()
                            if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                                last_report = now
                                yield Progress(done, total)
                    except (TimeoutError, aiohttp.ClientPayloadError) as exc:
                        raise Unavailable(f"the download was interrupted after {done} bytes ({type(exc).__name__})") from exc
                if total and done != total and not response.headers.get("Content-Encoding"):
                    raise Unavailable(f"the download ended after {done} of {total} bytes")
                yield Progress(done, total or done)

    async def _get_following_redirects(self, session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
        # Redirects are followed by hand so every hop's host goes through the policy
        # (aiohttp skips the resolver, and so the guard, for literal IP hosts).
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            try:
                # identity: Content-Length then counts the bytes we receive and store
                response = await session.get(url, allow_redirects=False, headers={"Accept-Encoding": "identity"})
            except aiohttp.InvalidURL as exc:
                raise InvalidArgument(f"not a valid URL: {exc}") from exc
            except aiohttp.ClientConnectorDNSError as exc:
                raise InvalidArgument(f"cannot resolve host {urlsplit(url).hostname}") from exc
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, RefusedAddress):  # the connect guard
                    raise InvalidArgument(str(exc.os_error)) from exc
                raise Unavailable(f"cannot connect to {urlsplit(url).netloc}: {exc.strerror or exc}") from exc
            except TimeoutError as exc:
                raise Unavailable(f"timed out connecting to {urlsplit(url).netloc}") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"request to {urlsplit(url).netloc} failed: {exc}") from exc
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                response.release()
                continue
            if response.status != 200:
                response.release()
                kind = InvalidArgument if 400 <= response.status < 500 else Unavailable
                raise kind(f"the server answered HTTP {response.status} {response.reason or ''}".strip())
            return response
        raise InvalidArgument(f"more than {MAX_REDIRECTS} redirects")

    # -- yt-dlp ----------------------------------------------------------

    async def _via_ytdlp(self, url: str) -> AsyncIterator[FetchEvent]:
        host = self.policy.check_url(url)
        await asyncio.to_thread(self.policy.resolve_and_check, host)
        loop = asyncio.get_running_loop()
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
        job = asyncio.create_task(asyncio.to_thread(ytdlp.download, url, work_dir, self.max_bytes, on_progress, lambda: stop))
        try:
            while not job.done() or not queue.empty():
                getter = asyncio.create_task(queue.get())
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
            content_id = await asyncio.to_thread(sha256_file, media_file)
            metadata, stored = await self._finish(media_file, content_id, metadata)
            self.store.remember_url(url, stored.content_id, metadata)
            yield Metadata(metadata)
            yield Ready(stored, from_cache=False)
        finally:
            stop = True  # tells a still-running yt-dlp (client went away) to give up
            if not job.done():
                await asyncio.wait({job})
            await asyncio.to_thread(shutil.rmtree, work_dir, True)

    # -- shared ----------------------------------------------------------

    async def _finish(self, file: Path, content_id: str, metadata: dict) -> tuple[dict, StoredAudio]:
        """Probe the file (refusing non-audio), then move it into the store."""
        try:
            probe = await asyncio.to_thread(audio.probe, file)
        except ServiceError as exc:
            raise InvalidArgument(f"the URL did not return audio or video: {exc.message}") from exc
        stored = await asyncio.to_thread(self.store.add, file, content_id, probe.format, probe.duration_seconds)
        metadata = {**metadata, "duration_seconds": metadata.get("duration_seconds") or probe.duration_seconds}
        return metadata, stored
