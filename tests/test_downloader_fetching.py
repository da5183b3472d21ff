"""The downloader against a misbehaving origin on loopback: timeouts, retries, resume,
sniffing, single flight, admission, the duration limit, the canonical form and the
bounded store. In-process (`build_fetcher`, as the service builds it), so each case
can set its own limits.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
import pytest

from conftest import SAMPLE_WAV, read_audio, silent_flac, write_wav
from transcription import audio
from transcription.downloader import ytdlp
from transcription.downloader.events import CacheHit, Metadata, Progress, Ready
from transcription.downloader.server import build_fetcher
from transcription.downloader.settings import DownloaderSettings
from transcription.errors import InvalidArgument, ResourceExhausted, Unavailable
from transcription.files import sha256_file
from transcription.v1 import downloader_pb2

SAMPLE = SAMPLE_WAV.read_bytes()


class Origin(BaseHTTPRequestHandler):
    """Each path a behaviour; ``server.log`` records (path, Range header, time) of every request."""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None, content_type: str = "audio/wav") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _times_seen(self) -> int:
        return sum(1 for path, _, _ in self.server.log if path == self.path)

    def do_GET(self):  # noqa: C901 - one branch per behaviour reads best here
        self.server.log.append((self.path, self.headers.get("Range"), time.monotonic()))
        path, seen = self.path, self._times_seen()
        files = self.server.files
        if path in files:
            self._send(200, files[path][0], content_type=files[path][1])
        elif path == "/drip.wav":  # a few bytes at a time, forever
            self.send_response(200)
            self.send_header("Content-Length", str(len(SAMPLE)))
            self.end_headers()
            for start in range(0, len(SAMPLE), 20):
                self.wfile.write(SAMPLE[start : start + 20])
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/burst-then-pause.wav":  # half at once, then nothing for a while
            self.send_response(200)
            self.send_header("Content-Length", str(len(SAMPLE)))
            self.end_headers()
            for start in range(0, len(SAMPLE) // 2, 4096):  # many small pieces inside one progress interval
                self.wfile.write(SAMPLE[start : min(start + 4096, len(SAMPLE) // 2)])
            self.wfile.flush()
            time.sleep(1.5)
            self.wfile.write(SAMPLE[len(SAMPLE) // 2 :])
        elif path == "/cut-ranged.wav":  # supports Range, but the first response breaks off half-way
            self._ranged(cut=seen == 1)
        elif path == "/cut-unranged.wav":  # breaks off once, no Range support: a retry starts again
            self.send_response(200)
            self.send_header("Content-Length", str(len(SAMPLE)))
            self.end_headers()
            self.wfile.write(SAMPLE if seen > 1 else SAMPLE[: len(SAMPLE) // 3])
            self.wfile.flush()
            time.sleep(0.3)
            self.close_connection = True
        elif path.startswith("/flaky-500/"):  # two failures, then the file
            self._send(*((500, b"oops") if seen <= 2 else (200, SAMPLE)))
        elif path == "/always-503.wav":
            self._send(503, b"down")
        elif path == "/429.wav":
            self._send(*((429, b"slow down", {"Retry-After": "1"}) if seen == 1 else (200, SAMPLE)))
        elif path == "/429-for-an-hour.wav":
            self._send(429, b"slow down", {"Retry-After": "3600"})
        elif path == "/huge.wav":  # declares a terabyte
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(SAMPLE[:1000])
        elif path.startswith("/slow/"):  # the whole file over about a second
            self.send_response(200)
            self.send_header("Content-Length", str(len(SAMPLE)))
            self.end_headers()
            for start in range(0, len(SAMPLE), len(SAMPLE) // 10 + 1):
                self.wfile.write(SAMPLE[start : start + len(SAMPLE) // 10 + 1])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(404, b"not found", content_type="text/plain")

    def _ranged(self, cut: bool) -> None:
        etag = '"v1"'
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, etag):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            body = SAMPLE[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(SAMPLE) - 1}/{len(SAMPLE)}")
        else:
            body = SAMPLE
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:  # the client reads the first half, then the connection breaks
            self.wfile.flush()
            time.sleep(0.3)
            self.close_connection = True


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.log = []
    server.files = {}  # path -> (body, content type), added by tests
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = lambda path: f"http://127.0.0.1:{server.server_address[1]}{path}"
    server.requests = lambda path: [entry for entry in server.log if entry[0] == path]
    yield server
    server.shutdown()


def make_fetcher(tmp_path, **settings):
    defaults = {
        "downloader_allowed_networks": "127.0.0.0/8",
        "downloader_connect_timeout_seconds": 5,
        "downloader_read_timeout_seconds": 5,
        "downloader_max_retry_wait_seconds": 5,
    }
    return build_fetcher(DownloaderSettings(data_dir=tmp_path, **{**defaults, **settings}))


async def fetch(f, url, **options) -> list:
    return [event async for event in f.fetch(url, **options)]


def assert_nothing_left(f) -> None:
    assert not any(f.store.tmp_dir.iterdir()), list(f.store.tmp_dir.iterdir())


# -- timeouts, retries, resume -------------------------------------------------


async def test_slow_drip_is_abandoned(tmp_path, origin):
    f = make_fetcher(tmp_path, downloader_min_bytes_per_second=5000, downloader_rate_window_seconds=0.5)
    began = time.monotonic()
    with pytest.raises(Unavailable, match="too slow"):
        await fetch(f, origin.url("/drip.wav"))
    assert time.monotonic() - began < 5
    assert_nothing_left(f)


async def test_progress_catches_up_when_the_line_goes_quiet(tmp_path, origin):
    f = make_fetcher(tmp_path)
    seen = []
    async for event in f.fetch(origin.url("/burst-then-pause.wav")):
        if isinstance(event, Progress):
            seen.append((time.monotonic(), event.bytes_done))
    (burst_reported,) = [at for at, done in seen if done == len(SAMPLE) // 2][:1] or [None]
    assert burst_reported is not None, f"the half that arrived before the pause was reported: {[d for _, d in seen]}"
    assert seen[-1][0] - burst_reported > 1.0, "and reported during the pause, not after it"


async def test_broken_download_resumes_with_range(tmp_path, origin):
    f = make_fetcher(tmp_path)
    events = await fetch(f, origin.url("/cut-ranged.wav"))
    ready = events[-1]
    assert isinstance(ready, Ready)
    assert f.store.audio_path(ready.audio.content_id).read_bytes() == SAMPLE
    first, second = origin.requests("/cut-ranged.wav")
    assert first[1] is None
    assert second[1] == f"bytes={len(SAMPLE) // 2}-", "the second request resumes where the first broke off"


async def test_broken_download_without_range_support_starts_again(tmp_path, origin):
    f = make_fetcher(tmp_path)
    ready = (await fetch(f, origin.url("/cut-unranged.wav")))[-1]
    assert f.store.audio_path(ready.audio.content_id).read_bytes() == SAMPLE
    assert [r[1] for r in origin.requests("/cut-unranged.wav")] == [None, None]


async def test_server_errors_are_retried_then_given_up(tmp_path, origin):
    f = make_fetcher(tmp_path, downloader_retries=2)
    ready = (await fetch(f, origin.url("/flaky-500/a.wav")))[-1]
    assert isinstance(ready, Ready) and len(origin.requests("/flaky-500/a.wav")) == 3
    with pytest.raises(Unavailable, match=r"HTTP 503.*gave up after 2 retries"):
        await fetch(f, origin.url("/always-503.wav"))
    assert len(origin.requests("/always-503.wav")) == 3
    assert_nothing_left(f)


async def test_429_honours_retry_after(tmp_path, origin):
    f = make_fetcher(tmp_path)
    ready = (await fetch(f, origin.url("/429.wav")))[-1]
    assert isinstance(ready, Ready)
    (_, _, refused_at), (_, _, retried_at) = origin.requests("/429.wav")
    assert retried_at - refused_at >= 0.95, "the retry waited for Retry-After: 1"
    began = time.monotonic()
    with pytest.raises(Unavailable, match="retry in 3600 s, too long"):
        await fetch(f, origin.url("/429-for-an-hour.wav"))
    assert time.monotonic() - began < 3


async def test_declared_size_over_the_limit_is_refused_before_reading(tmp_path, origin):
    f = make_fetcher(tmp_path)
    with pytest.raises(InvalidArgument, match="1000000000000 bytes, larger than"):
        await fetch(f, origin.url("/huge.wav"))
    assert len(origin.requests("/huge.wav")) == 1
    assert_nothing_left(f)


async def test_http_errors_are_not_retried(tmp_path, origin):
    f = make_fetcher(tmp_path)
    with pytest.raises(InvalidArgument, match="HTTP 404"):
        await fetch(f, origin.url("/nothing-here.wav"))
    assert len(origin.requests("/nothing-here.wav")) == 1


# -- sniffing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "content_type", "expected"),
    [
        ("/page.html", b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", "an HTML page"),
        ("/disguised.mp3", b"<html><body>404 but 200</body></html>", "audio/mpeg", "an HTML page"),
        ("/paper.pdf", b"%PDF-1.7\n" + bytes(2000), "application/octet-stream", "a PDF document"),
        ("/archive.zip", b"PK\x03\x04" + bytes(2000), "application/zip", "a ZIP archive"),
        ("/notes.txt", b"just words\n" * 50, "text/plain", "a text document"),
    ],
)
async def test_non_media_is_refused_before_it_is_stored(tmp_path, origin, name, body, content_type, expected):
    origin.files[name] = (body, content_type)
    f = make_fetcher(tmp_path)
    with pytest.raises(InvalidArgument, match=f"returned {expected}, not audio or video"):
        await fetch(f, origin.url(name), method=downloader_pb2.FETCH_METHOD_DIRECT)
    assert f.store.stats()["total_files"] == 0
    assert_nothing_left(f)


async def test_a_page_without_media_is_refused_after_yt_dlp_looked(tmp_path, origin):
    origin.files["/empty-page.html"] = (b"<!DOCTYPE html><html><body><p>no media</p></body></html>", "text/html")
    f = make_fetcher(tmp_path)
    with pytest.raises(InvalidArgument, match="HTML page, not audio or video, and yt-dlp found no media in it"):
        await fetch(f, origin.url("/empty-page.html"))


async def test_a_page_embedding_audio_is_fetched_through_yt_dlp(tmp_path, origin):
    origin.files["/clip.wav"] = (SAMPLE, "audio/wav")
    origin.files["/player.html"] = (b'<!DOCTYPE html><html><body><audio src="clip.wav"></audio></body></html>', "text/html")
    f = make_fetcher(tmp_path)
    events = await fetch(f, origin.url("/player.html"))
    ready = events[-1]
    assert isinstance(ready, Ready)
    assert f.store.audio_path(ready.audio.content_id).read_bytes() == SAMPLE
    assert next(e for e in events if isinstance(e, Metadata)).fields["extractor"] != "direct"


# -- single flight, method-keyed cache, admission ---------------------------------------


async def test_ten_concurrent_fetches_share_one_download(tmp_path, origin):
    f = make_fetcher(tmp_path)
    url = origin.url("/slow/shared.wav")
    results = await asyncio.gather(*(fetch(f, url) for _ in range(10)))
    assert len(origin.requests("/slow/shared.wav")) == 1, "the origin saw one request"
    content_ids = {events[-1].audio.content_id for events in results}
    assert len(content_ids) == 1 and all(isinstance(events[-1], Ready) for events in results)
    assert all(any(isinstance(e, Progress) for e in events) for events in results), "every caller saw progress"
    # once done, the next caller is answered from the cache, not by the same flight
    again = await fetch(f, url)
    assert isinstance(again[0], CacheHit)


async def test_a_caller_leaving_does_not_stop_the_others(tmp_path, origin):
    f = make_fetcher(tmp_path)
    url = origin.url("/slow/leaver.wav")

    async def leave_early():
        async for event in f.fetch(url):
            if isinstance(event, Progress) and event.bytes_done:
                return "left"

    left, stayed = await asyncio.gather(leave_early(), fetch(f, url))
    assert left == "left" and isinstance(stayed[-1], Ready)
    assert len(origin.requests("/slow/leaver.wav")) == 1


async def test_url_cache_is_keyed_by_method(tmp_path, origin):
    origin.files["/method.wav"] = (SAMPLE, "audio/wav")
    f = make_fetcher(tmp_path)
    url = origin.url("/method.wav")
    direct = await fetch(f, url, method=downloader_pb2.FETCH_METHOD_DIRECT)
    via_ytdlp = await fetch(f, url, method=downloader_pb2.FETCH_METHOD_YTDLP)
    assert not via_ytdlp[-1].from_cache, "a yt-dlp fetch does not reuse the direct fetch's record"
    metadata = [next(e for e in events if isinstance(e, Metadata)).fields for events in (direct, via_ytdlp)]
    assert metadata[0]["extractor"] == "direct" and metadata[1]["extractor"] != "direct"
    assert isinstance((await fetch(f, url, method=downloader_pb2.FETCH_METHOD_YTDLP))[0], CacheHit)
    assert direct[-1].audio.content_id == via_ytdlp[-1].audio.content_id
    assert f.store.stats()["total_files"] == 1, "the same bytes are stored once"


async def test_downloads_beyond_the_queue_are_refused(tmp_path, origin):
    f = make_fetcher(tmp_path, downloader_max_concurrent=1, downloader_max_queued=1)
    running = asyncio.ensure_future(fetch(f, origin.url("/slow/first.wav")))
    while not origin.requests("/slow/first.wav"):  # the first holds the slot before the second asks
        await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(fetch(f, origin.url("/slow/second.wav")))
    await asyncio.sleep(0.3)
    with pytest.raises(ResourceExhausted, match="at capacity"):
        await fetch(f, origin.url("/slow/third.wav"))
    assert isinstance((await running)[-1], Ready) and isinstance((await queued)[-1], Ready)
    starts = {path: at for path, _, at in origin.log if path.startswith("/slow/") and path[6:] in ("first.wav", "second.wav")}
    assert starts["/slow/second.wav"] - starts["/slow/first.wav"] >= 0.5, "the queued download waited for the slot"
    assert not origin.requests("/slow/third.wav")


# -- duration limit and canonical form ----------------------------------------------


async def test_duration_limit_is_checked_before_decoding(tmp_path, origin):
    origin.files["/eight-hours.flac"] = (silent_flac(8 * 3600), "audio/flac")
    f = make_fetcher(tmp_path)  # the default limit: 4 hours
    began = time.monotonic()
    with pytest.raises(InvalidArgument, match="8 h 00 min long, over the 4 h 00 min limit"):
        await fetch(f, origin.url("/eight-hours.flac"))
    assert time.monotonic() - began < 5
    assert f.store.stats()["total_files"] == 0
    assert_nothing_left(f)


async def test_just_under_the_limit_goes_through_and_just_over_does_not(tmp_path, origin):
    origin.files["/under.flac"] = (silent_flac(59.5), "audio/flac")
    origin.files["/over.flac"] = (silent_flac(60.5), "audio/flac")
    f = make_fetcher(tmp_path, downloader_max_duration_seconds=60)
    ready = (await fetch(f, origin.url("/under.flac")))[-1]
    assert ready.audio.canonical_size_bytes == 2 * int(59.5 * 16_000)
    with pytest.raises(InvalidArgument, match="over the 1 min 00 s limit"):
        await fetch(f, origin.url("/over.flac"))


async def test_canonical_form_is_the_decoded_audio(tmp_path, origin):
    origin.files["/canonical.wav"] = (SAMPLE, "audio/wav")
    f = make_fetcher(tmp_path)
    stored = (await fetch(f, origin.url("/canonical.wav")))[-1].audio
    pcm = f.store.audio_path(stored.content_id, canonical=True).read_bytes()
    assert stored.canonical_size_bytes == len(pcm)
    expected = read_audio(SAMPLE_WAV)
    samples = audio.pcm_to_float(pcm)
    assert samples.size == expected.size
    assert np.max(np.abs(samples - expected)) < 1e-3
    assert sha256_file(f.store.audio_path(stored.content_id)) == stored.content_id


def encode(samples: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    """``samples`` (16 kHz mono float32) encoded at ``rate`` with PyAV: what a site would serve."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    source = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    source.rate = 16_000
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        for frame in resampler.resample(source) + resampler.resample(None):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "container", "codec", "rate", "probed"),
    [
        ("clip.mp3", "mp3", "mp3", 44_100, "mp3"),
        ("clip.m4a", "ipod", "aac", 44_100, "mov"),
        ("clip.webm", "webm", "libopus", 48_000, "matroska"),
        ("clip.opus", "ogg", "libopus", 48_000, "ogg"),
        ("clip.flac", "flac", "flac", 22_050, "flac"),
    ],
)
async def test_formats_are_stored_with_their_canonical_form(tmp_path, origin, name, container, codec, rate, probed):
    speech = read_audio(SAMPLE_WAV)[: 16_000 * 4]
    origin.files[f"/formats/{name}"] = (encode(speech, container, codec, rate), "application/octet-stream")
    f = make_fetcher(tmp_path)
    stored = (await fetch(f, origin.url(f"/formats/{name}")))[-1].audio
    assert stored.format == probed
    samples = audio.pcm_to_float(f.store.audio_path(stored.content_id, canonical=True).read_bytes())
    assert abs(samples.size - speech.size) < 16_000 * 0.1, "4 s in, 4 s out (give or take codec padding)"
    level = np.sqrt(np.mean(samples**2)) / np.sqrt(np.mean(speech**2))
    assert 0.8 < level < 1.25, "the speech survived at its level"


# -- the bounded store --------------------------------------------------------------


async def test_store_evicts_least_recently_used_but_never_an_entry_being_read(tmp_path, origin):
    names = []
    for number in range(4):
        name = f"/lru-{number}.wav"
        write_wav(tmp_path / "clip.wav", read_audio(SAMPLE_WAV)[: 16_000 * 5] + number * 1e-3)
        origin.files[name] = ((tmp_path / "clip.wav").read_bytes(), "audio/wav")
        names.append(name)
    entry_bytes = len(origin.files[names[0]][0]) * 2 + 400  # original + canonical (same size for 16 kHz wav) + record
    f = make_fetcher(tmp_path, downloader_store_max_bytes=int(entry_bytes * 2.5))  # room for two
    ids = []
    for name in names[:2]:
        ids.append((await fetch(f, origin.url(name)))[-1].audio.content_id)
        await asyncio.sleep(0.02)  # distinct last-use times
    with f.store.open_audio(ids[0], canonical=True) as reader:  # the oldest entry, being read
        ids.append((await fetch(f, origin.url(names[2])))[-1].audio.content_id)
        assert f.store.has(ids[0]), "an entry being read is never evicted"
        assert f.store.has(ids[1]) is False, "the least recently used entry not being read went"
        assert len(reader.read()) == 2 * 16_000 * 5
    await asyncio.sleep(0.02)
    ids.append((await fetch(f, origin.url(names[3])))[-1].audio.content_id)
    assert f.store.has(ids[0]) is False, "released, it is evicted like any other"
    assert {cid for cid in ids if f.store.has(cid)} == {ids[2], ids[3]}
    assert f.store.stats()["total_bytes"] <= entry_bytes * 2.5
    # the evicted URLs are fetched again, not answered from a dead record
    assert not (await fetch(f, origin.url(names[1])))[-1].from_cache


async def test_store_age_limit(tmp_path, origin):
    origin.files["/old.wav"] = (SAMPLE, "audio/wav")
    origin.files["/new.wav"] = (SAMPLE[:-2000], "audio/wav")
    f = make_fetcher(tmp_path, downloader_store_max_age_seconds=0.5)
    old = (await fetch(f, origin.url("/old.wav")))[-1].audio.content_id
    await asyncio.sleep(0.7)
    await fetch(f, origin.url("/new.wav"))
    assert not f.store.has(old) and f.store.stats()["total_files"] == 1


def test_clear_spares_entries_being_read(tmp_path):
    f = make_fetcher(tmp_path)
    store = f.store
    for seed in range(2):
        original = store.new_tmp_file()
        original.write_bytes(bytes([seed]) * 100)
        canonical = store.new_tmp_file()
        canonical.write_bytes(b"\0\0" * 10)
        store.add(original, canonical, sha256_file(original), "wav", 1.0)
    kept, gone = sorted(p.stem for p in store.audio_dir.glob("*.json"))
    with store.open_audio(kept):
        cleared = store.clear()
    assert cleared["files_deleted"] == 3 and store.get(kept) and not store.get(gone)


def test_a_crash_between_renames_leaves_no_entry(tmp_path):
    """Files of an entry without its record (killed before the record was written) are swept on start."""
    f = make_fetcher(tmp_path)
    orphan = f.store.audio_dir / ("ab" * 32)
    orphan.write_bytes(b"half an entry")
    (f.store.audio_dir / ("ab" * 32 + ".pcm")).write_bytes(b"\0\0")
    old_style = "cd" * 32  # an entry from before the canonical form: original and record, no .pcm
    (f.store.audio_dir / old_style).write_bytes(b"old")
    (f.store.audio_dir / f"{old_style}.json").write_text('{"content_id": "x"}')
    restarted = make_fetcher(tmp_path)
    assert not any(restarted.store.audio_dir.iterdir())


# -- YouTube: one cache entry per video, the other link forms tried on failure ---------------


async def test_youtube_forms_share_one_entry_and_a_failing_form_falls_back(tmp_path, monkeypatch):
    """No network: yt-dlp's download is replaced by one that fails for the watch URL and "downloads" youtu.be."""
    f = make_fetcher(tmp_path)
    monkeypatch.setattr(f.policy, "resolve_and_check", lambda host: ["203.0.113.1"])  # no DNS in tests
    tried = []

    def download(url, target_dir, max_bytes, on_progress, should_stop, **options):
        tried.append(url)
        if "youtu.be" not in url:
            raise Unavailable("yt-dlp could not fetch the media: HTTP Error 403")
        media = target_dir / "media.wav"
        media.write_bytes(SAMPLE)
        return media, {"title": "a video", "webpage_url": url, "extractor": "Youtube"}

    monkeypatch.setattr(ytdlp, "download", download)
    events = await fetch(f, "https://youtube.com/shorts/dQw4w9WgXcQ?si=tracking&t=42")
    assert tried == ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ"]
    assert isinstance(events[-1], Ready) and f.store.audio_path(events[-1].audio.content_id).read_bytes() == SAMPLE
    for pasted in ("https://m.youtube.com/watch?v=dQw4w9WgXcQ&list=PL123&index=2", "youtu.be/dQw4w9WgXcQ?t=1"):
        again = await fetch(f, pasted)
        assert isinstance(again[0], CacheHit), pasted
    assert len(tried) == 2


async def test_youtube_gives_up_after_every_form_failed(tmp_path, monkeypatch):
    f = make_fetcher(tmp_path)
    monkeypatch.setattr(f.policy, "resolve_and_check", lambda host: ["203.0.113.1"])
    tried = []

    def download(url, *args, **options):
        tried.append(url)
        raise Unavailable("yt-dlp could not fetch the media: HTTP Error 403")

    monkeypatch.setattr(ytdlp, "download", download)
    with pytest.raises(Unavailable, match="403"):
        await fetch(f, "https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert len(tried) == 3
    assert_nothing_left(f)


# -- uploads ------------------------------------------------------------------------


async def blocks_of(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_upload_is_stored_like_a_download(tmp_path):
    f = make_fetcher(tmp_path)
    stored = await f.upload(blocks_of(SAMPLE))
    assert f.store.audio_path(stored.content_id).read_bytes() == SAMPLE
    assert stored.canonical_size_bytes == 2 * 16_000 * 30 and stored.format == "wav"
    assert (await f.upload(blocks_of(SAMPLE))).content_id == stored.content_id  # stored once


@pytest.mark.parametrize(
    ("data", "settings", "message"),
    [
        (b"<!DOCTYPE html><html></html>", {}, "the file is an HTML page, not audio or video"),
        (b"", {}, "the uploaded file is empty"),
        (SAMPLE, {"downloader_max_bytes": 100_000}, "larger than the 100000-byte limit"),
        (SAMPLE, {"downloader_max_duration_seconds": 10}, "30 s long, over the 10 s limit"),
        (b"\x00\x01" * 5000, {}, "this is not audio or video: not a readable audio or video file"),
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing(tmp_path, data, settings, message):
    f = make_fetcher(tmp_path, **settings)
    with pytest.raises(InvalidArgument, match=message):
        await f.upload(blocks_of(data))
    assert f.store.stats()["total_files"] == 0
    assert_nothing_left(f)


async def test_video_info_of_a_direct_file_reads_only_its_head(tmp_path, origin):
    origin.files["/info/long-talk.wav"] = (SAMPLE * 3, "audio/wav")  # ~3 MB, more than the peek
    f = make_fetcher(tmp_path)
    info = await f.video_info(origin.url("/info/long-talk.wav"))
    assert info["title"] == "long-talk" and info["extractor"] == "direct"
    assert info["duration_seconds"] == pytest.approx(30.0, abs=0.01), "from the WAV header, not from the bytes at hand"
    ((_, asked, _),) = origin.requests("/info/long-talk.wav")
    assert asked == "bytes=0-262143"
    origin.files["/info/page.pdf"] = (b"%PDF-1.7" + bytes(100), "application/pdf")
    with pytest.raises(InvalidArgument, match="a PDF document"):
        await f.video_info(origin.url("/info/page.pdf"))
