"""Plain HTTP(S) downloads that survive the real internet.

One `HttpDownload` fetches one URL into a file, hashing as it writes:

* connect, read (no byte for N s) and total timeouts, and a minimum rate over
  a window, so a slow drip ends instead of holding a slot forever;
* retries with exponential backoff on connection resets, 5xx and 429 (honouring
  ``Retry-After``), resuming with ``Range``/``If-Range`` where the server allows;
* a size limit, refused early on ``Content-Length`` and enforced while reading;
* content sniffing of the first bytes: an HTML/XML page or an HLS playlist
  (`PageNotMedia`, which yt-dlp's generic extractor may still make sense of)
  or a known non-media file type is refused before it is stored.

Every hop of a redirect chain goes through the address policy (aiohttp skips
the resolver, and so the guard, for literal IP hosts), and every message names
URLs only in their redacted form.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from transcription.downloader import urls
from transcription.downloader.events import Progress
from transcription.downloader.netguard import AddressPolicy, GuardedResolver, RefusedAddress
from transcription.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

WRITE_BATCH = 1024 * 1024  # bytes received before they are handed to the executor to hash and write
READ_BUFFER = 1024 * 1024  # aiohttp stops reading the socket past twice this; its 64 KiB default starves fast links
MAX_REDIRECTS = 10
PROGRESS_INTERVAL_SECONDS = 0.2
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SNIFF_BYTES = 512

# First bytes of common files that are certainly not audio or video.
NOT_MEDIA_SIGNATURES = {
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "a program",
}
PAGE, PLAYLIST = "an HTML page", "a playlist or XML document"  # what sniff calls content yt-dlp may read
PAGE_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<rss", b"<mpd", b"#extm3u")


@dataclass(frozen=True)
class HttpLimits:
    max_bytes: int
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # seconds without a single byte
    total_timeout: float = 3 * 3600.0
    min_bytes_per_second: int = 1024  # averaged over rate_window_seconds
    rate_window_seconds: float = 30.0
    retries: int = 3
    max_retry_wait_seconds: float = 30.0


class PageNotMedia(InvalidArgument):
    """The URL serves a page or playlist, not media: yt-dlp's generic extractor may find the media in it."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def sniff(content_type: str, head: bytes) -> str | None:
    """What the first bytes are when they are certainly not media ("an HTML page"), else None."""
    start = head.lstrip()[:16].lower()
    if start.startswith(PAGE_STARTS) or content_type.startswith(("text/html", "application/xhtml")):
        return PAGE if b"<?xml" not in start and b"#extm3u" not in start else PLAYLIST
    for signature, what in NOT_MEDIA_SIGNATURES.items():
        if head.startswith(signature):
            return what
    if content_type.startswith(("text/plain", "application/json")) and _looks_like_text(head):
        return "a text document"
    return None


def refusal(what: str) -> InvalidArgument:
    """The error for content `sniff` recognised: `PageNotMedia` for a page or playlist (yt-dlp may read it)."""
    kind = PageNotMedia if what in (PAGE, PLAYLIST) else InvalidArgument
    return kind(f"the URL returned {what}, not audio or video")


def _looks_like_text(head: bytes) -> bool:
    text = head.decode("utf-8", errors="ignore")  # a cut multi-byte character at the end is dropped
    return bool(text) and len(text) >= len(head) // 2 and all(c.isprintable() or c.isspace() for c in text)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    return int(match.group(1)) if match else None


class HttpDownload:
    """Download ``url`` into ``path``; iterate `run()` for progress. ``sha256`` is the digest once it ends."""

    def __init__(self, url: str, path: Path, policy: AddressPolicy, limits: HttpLimits, executor: Executor):
        self.url = url
        self.path = path
        self.policy = policy
        self.limits = limits
        self.executor = executor  # file writes and hashing stay off the event loop
        self.done = 0
        self.total = 0
        self.validator = ""  # ETag or Last-Modified of the first response, for If-Range
        self.resumable = False
        self._digest = hashlib.sha256()
        self.requests = 0

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    async def run(self) -> AsyncIterator[Progress]:
        limits = self.limits
        timeout = aiohttp.ClientTimeout(total=limits.total_timeout, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy))
        deadline = time.monotonic() + limits.total_timeout
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, read_bufsize=READ_BUFFER) as session:
            with self.path.open("wb") as out:
                for attempt in range(limits.retries + 1):
                    try:
                        async for progress in self._attempt(session, out):
                            yield progress
                        return
                    except _Retryable as exc:
                        wait = exc.retry_after if exc.retry_after is not None else min(limits.max_retry_wait_seconds, 0.5 * 2**attempt)
                        if attempt == limits.retries:
                            raise Unavailable(f"{exc.message} (gave up after {limits.retries} retries)") from exc
                        if wait > limits.max_retry_wait_seconds or time.monotonic() + wait > deadline:
                            raise Unavailable(f"{exc.message}; the server asked to retry in {wait:.0f} s, too long to wait") from exc
                        log.info("retrying %s in %.1f s: %s", urls.redact(self.url), wait, exc.message)
                        await asyncio.sleep(wait)

    async def peek(self, size: int) -> tuple[str, bytes]:
        """The Content-Type and first ``size`` bytes (or fewer) of the URL, redirects followed and checked: no download."""
        timeout = aiohttp.ClientTimeout(
            total=self.limits.connect_timeout + self.limits.read_timeout, sock_connect=self.limits.connect_timeout
        )
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy))
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            response = await self._get_following_redirects(session, {"Accept-Encoding": "identity", "Range": f"bytes=0-{size - 1}"})
            async with response:
                head = bytearray()
                async for piece in response.content.iter_any():
                    head += piece
                    if len(head) >= size:
                        break
                return response.headers.get("Content-Type", "").lower(), bytes(head[:size])

    async def _attempt(self, session: aiohttp.ClientSession, out) -> AsyncIterator[Progress]:
        headers = {"Accept-Encoding": "identity"}  # Content-Length then counts the bytes we receive and store
        if self.done and self.resumable:
            headers["Range"] = f"bytes={self.done}-"
            if self.validator:
                headers["If-Range"] = self.validator  # a changed file answers 200 with all of it
        response = await self._get_following_redirects(session, headers)
        async with response:
            if response.status == 206:
                if not self.done or _content_range_start(response.headers.get("Content-Range")) != self.done:
                    self.resumable = False  # a range we did not ask for: start again without one
                    raise _Retryable("the server answered with a range that was not asked for")
                log.info("resuming %s at byte %d", urls.redact(self.url), self.done)
            else:
                await self._restart(out)  # first attempt, or the server sent the whole file again
                self.total = response.content_length or 0
                if self.total > self.limits.max_bytes:
                    raise InvalidArgument(f"the file is {self.total} bytes, larger than the {self.limits.max_bytes}-byte limit")
                self.validator = response.headers.get("ETag") or response.headers.get("Last-Modified") or ""
                self.resumable = response.headers.get("Accept-Ranges", "").lower() == "bytes"
            yield Progress(self.done, self.total)
            async for progress in self._read_body(response, out):
                yield progress
        if self.total and self.done < self.total and not response.headers.get("Content-Encoding"):
            raise _Retryable(f"the download ended after {self.done} of {self.total} bytes")
        yield Progress(self.done, self.total or self.done)

    async def _restart(self, out) -> None:
        self.done = 0
        self._digest = hashlib.sha256()
        await asyncio.get_running_loop().run_in_executor(self.executor, lambda: (out.seek(0), out.truncate()))

    def _write(self, out, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._digest.update(piece)
        out.writelines(pieces)

    async def _read_body(self, response: aiohttp.ClientResponse, out) -> AsyncIterator[Progress]:
        """Receive the body while the previous batch is hashed and written on the executor (one batch in flight)."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        last_report = window_start = time.monotonic()
        window_bytes = 0
        batch: list[bytes] = []
        batch_bytes = 0
        writing: asyncio.Future | None = None

        async def flush() -> None:
            nonlocal writing, batch, batch_bytes
            if writing is not None:
                await writing
            writing = loop.run_in_executor(self.executor, self._write, out, batch) if batch else None
            batch, batch_bytes = [], 0

        pieces = response.content.iter_any().__aiter__()
        behind = False  # progress not reported yet (throttled): reported as soon as the line goes quiet
        try:
            while True:
                if behind:  # a burst, then a pause: say how far it got as soon as the line goes quiet
                    try:
                        async with asyncio.timeout(PROGRESS_INTERVAL_SECONDS) as deadline:
                            piece = await anext(pieces, None)  # (a cancelled read loses nothing: aiohttp keeps the buffer)
                    except TimeoutError:
                        if not deadline.expired():
                            raise  # aiohttp's read timeout, not ours
                        behind, last_report = False, time.monotonic()
                        yield Progress(self.done, self.total)
                        continue
                else:
                    piece = await anext(pieces, None)
                if piece is None:
                    break
                if self.done == 0 and not batch and (what := sniff(response.headers.get("Content-Type", "").lower(), piece[:SNIFF_BYTES])):
                    raise refusal(what)
                self.done += len(piece)
                if self.done > limits.max_bytes:
                    raise InvalidArgument(f"the download exceeded the {limits.max_bytes}-byte limit")
                batch.append(piece)
                batch_bytes += len(piece)
                if batch_bytes >= WRITE_BATCH:
                    await flush()
                now = time.monotonic()
                window_bytes += len(piece)
                if now - window_start >= limits.rate_window_seconds:
                    rate = window_bytes / (now - window_start)
                    if rate < limits.min_bytes_per_second:
                        raise Unavailable(
                            f"the download is too slow ({rate:.0f} bytes/s over {now - window_start:.0f} s;"
                            f" at least {limits.min_bytes_per_second} needed)"
                        )
                    window_start, window_bytes = now, 0
                behind = now - last_report < PROGRESS_INTERVAL_SECONDS
                if not behind:
                    last_report = now
                    yield Progress(self.done, self.total)
            await flush()
        except (aiohttp.ClientPayloadError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            await flush()  # what arrived is kept: a resume asks for the rest
            raise _Retryable(f"the download was interrupted after {self.done} bytes ({type(exc).__name__})") from exc
        except TimeoutError as exc:
            await flush()
            raise _Retryable(f"no data for {limits.read_timeout:.0f} s after {self.done} bytes") from exc
        finally:
            if writing is not None:
                await asyncio.shield(writing)  # the file is not closed under a write in progress

    async def _get_following_redirects(self, session: aiohttp.ClientSession, headers: dict) -> aiohttp.ClientResponse:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            where = urlsplit(url).hostname or "the server"
            self.requests += 1
            try:
                response = await session.get(url, allow_redirects=False, headers=headers)
            except aiohttp.InvalidURL as exc:
                raise InvalidArgument(f"not a valid URL: {urls.redact(str(exc))}") from exc
            except aiohttp.ClientConnectorDNSError as exc:
                raise InvalidArgument(f"cannot resolve host {where}") from exc
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, RefusedAddress):  # the connect guard
                    raise InvalidArgument(str(exc.os_error)) from exc
                raise Unavailable(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}") from exc
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
                raise _Retryable(f"the connection to {where} was reset ({type(exc).__name__})") from exc
            except TimeoutError as exc:
                raise Unavailable(f"timed out connecting to {where}") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"request to {where} failed: {urls.redact_text(str(exc))}") from exc
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                response.release()
                continue
            if response.status in RETRY_STATUSES:
                response.release()
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                raise _Retryable(f"the server answered HTTP {response.status} {response.reason or ''}".strip(), retry_after)
            if response.status not in (200, 206):
                response.release()
                kind = InvalidArgument if 400 <= response.status < 500 else Unavailable
                raise kind(f"the server answered HTTP {response.status} {response.reason or ''}".strip())
            return response
        raise InvalidArgument(f"more than {MAX_REDIRECTS} redirects")
