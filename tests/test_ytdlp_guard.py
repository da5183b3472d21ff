"""yt-dlp is held to what it downloads in-process (the connect guard sees no child process).

Everything runs on loopback against a local HTTP server, calling the downloader's
yt-dlp functions directly. Fake ffmpeg/ffprobe/rtmpdump/aria2c executables come
first on PATH and leave a marker when run: a test that ends with a marker means
yt-dlp started an external program, whose connections the guard would not see.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
import yt_dlp
import yt_dlp.globals
from yt_dlp.extractor.generic import GenericIE
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

from conftest import read_audio, write_wav
from transcription.downloader import ytdlp
from transcription.errors import InvalidArgument

RATE = 16_000
SECONDS = 3.0
EXTERNAL_TOOLS = ("ffmpeg", "ffprobe", "rtmpdump", "aria2c")
# yt-dlp protocol names that need a child process (rtmpdump, ffmpeg, ...) or never end
EXTERNAL_PROTOCOLS = ("rtmp", "rtmpe", "rtmp_ffmpeg", "rtsp", "mms", "f4m", "ism", "m3u8", "websocket_frag", "http_dash_segments_generator")


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()


class _Server(ThreadingHTTPServer):
    requests: list[str]

    def handle_error(self, request, client_address) -> None:
        # yt-dlp reads the start of a file to sniff it, then hangs up: not an error
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Site:
    directory: Path
    port: int
    rtmp_listener: socket.socket  # where rtmp.html's stream points; nothing may connect
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def _write_hls(directory: Path) -> None:
    """A VOD HLS media playlist, index.m3u8, of ~1 s MPEG-TS segments of AAC, encoded with PyAV."""
    directory.mkdir()
    options = {"hls_time": "1", "hls_playlist_type": "vod", "hls_segment_filename": str(directory / "seg%d.ts")}
    with av.open(str(directory / "index.m3u8"), "w", format="hls", options=options) as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        samples = _sine()
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    playlist = (directory / "index.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist and playlist.count(".ts") >= 2
    # The same segments behind a key method the native downloader refuses (it hands
    # such streams to ffmpeg); KEYFORMAT identity is not DRM, which yt-dlp drops earlier.
    key = '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",KEYFORMAT="identity"\n'
    (directory / "sample-aes.m3u8").write_text(playlist.replace("#EXTINF", key + "#EXTINF", 1))


def _sine() -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(RATE * SECONDS)) / RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("ytdlp-site")
    write_wav(directory / "clip.wav", _sine(), RATE)
    (directory / "page.html").write_text('<html><head><title>A clip</title></head><body><audio src="clip.wav"></audio></body></html>')
    _write_hls(directory / "hls")
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    listener.setblocking(False)
    rtmp = f"rtmp://127.0.0.1:{listener.getsockname()[1]}/live/x"
    (directory / "rtmp.html").write_text(f'<html><head><title>Live</title></head><body><video src="{rtmp}"></video></body></html>')
    server = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(directory)))
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Site(directory, server.server_address[1], listener, server.requests)
    server.shutdown()
    listener.close()


@pytest.fixture(autouse=True)
def no_external_tools(tmp_path, monkeypatch) -> Iterator[Path]:
    """Fake external tools first on PATH; after the test, none of them may have run."""
    bin_dir, markers = tmp_path / "fake-bin", tmp_path / "started"
    bin_dir.mkdir()
    markers.mkdir()
    for name in EXTERNAL_TOOLS:
        tool = bin_dir / name
        # a plausible version line, so yt-dlp would go on to use the tool if it looked here
        tool.write_text(f'#!/bin/sh\ntouch "{markers}/{name}"\necho "{name} version 7.1 Copyright (c) the FFmpeg developers"\n')
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    # yt-dlp remembers each ffmpeg path's version for the process: an earlier probe must not hide a new one
    monkeypatch.setattr(FFmpegPostProcessor, "_version_cache", {None: None})
    monkeypatch.setattr(FFmpegPostProcessor, "_features_cache", {})
    yield markers
    assert sorted(p.name for p in markers.iterdir()) == [], "yt-dlp started an external program"


def _download(url: str, target: Path, **kwargs) -> tuple[Path, dict, list[tuple[int, int]]]:
    target.mkdir()
    progress: list[tuple[int, int]] = []
    path, metadata = ytdlp.download(url, target, 50_000_000, lambda done, total: progress.append((done, total)), lambda: False, **kwargs)
    return path, metadata, progress


def _assert_nothing_connected(listener: socket.socket) -> None:
    # the kernel completes a handshake into the backlog even though nobody accepts
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_page_with_an_audio_tag_downloads_the_served_file(site, tmp_path):
    url = site.url("page.html")
    path, metadata, progress = _download(url, tmp_path / "out")
    assert path.read_bytes() == (site.directory / "clip.wav").read_bytes()
    assert metadata["title"].startswith("A clip") and metadata["webpage_url"] == url
    assert progress and progress[-1][0] == path.stat().st_size
    assert ytdlp.extract_info(url)["title"].startswith("A clip")


def test_native_hls_is_downloaded_in_process(site, tmp_path):
    before = len(site.requests)
    path, metadata, _ = _download(site.url("hls/index.m3u8"), tmp_path / "out")
    assert {"/hls/seg0.ts", "/hls/seg1.ts"} <= set(site.requests[before:]), "the segments were fetched by this process"
    # no fixup remuxed it: MPEG-TS as HlsFD wrote it, whatever the extension says
    with av.open(str(path)) as container:
        assert container.format.name == "mpegts"
    assert read_audio(path).size / RATE == pytest.approx(SECONDS, abs=0.25)
    assert metadata["duration_seconds"] == pytest.approx(SECONDS, abs=0.25)


def test_hls_the_native_downloader_refuses_is_not_handed_to_ffmpeg(site, tmp_path, no_external_tools):
    before = len(site.requests)
    with pytest.raises(InvalidArgument, match=r"external downloader \(such as ffmpeg.*disabled") as raised:
        _download(site.url("hls/sample-aes.m3u8"), tmp_path / "out")
    assert "only plain HTTP(S), HLS and DASH" in raised.value.message
    assert not [r for r in site.requests[before:] if r.endswith((".ts", "key.bin"))], "no segment or key fetched"
    assert not any((tmp_path / "out").iterdir())
    assert not (no_external_tools / "ffmpeg").exists() and not (no_external_tools / "ffprobe").exists(), "ffmpeg never started"


def test_page_whose_only_stream_is_rtmp_is_refused(site, tmp_path, no_external_tools):
    url = site.url("rtmp.html")
    # refused at format selection, so already when only the metadata is asked for
    with pytest.raises(InvalidArgument, match="external downloader .*disabled"):
        ytdlp.extract_info(url)
    with pytest.raises(InvalidArgument, match="external downloader .*disabled"):
        _download(url, tmp_path / "out")
    _assert_nothing_connected(site.rtmp_listener)
    assert not (no_external_tools / "rtmpdump").exists()


def test_a_protocol_that_slips_past_the_format_filter_is_still_refused(site, tmp_path, monkeypatch, no_external_tools):
    """The second lock: the chosen format's protocol is checked again before the download starts."""
    monkeypatch.setattr(ytdlp, "FORMAT", "bestaudio/best")
    url = site.url("rtmp.html")
    assert ytdlp.extract_info(url)["title"].startswith("Live"), "without the filter the rtmp format is chosen"
    with pytest.raises(InvalidArgument, match="external downloader .*disabled"):
        _download(url, tmp_path / "out")
    _assert_nothing_connected(site.rtmp_listener)
    assert not (no_external_tools / "rtmpdump").exists()


def test_the_cache_is_the_given_directory_or_none(site, tmp_path, monkeypatch):
    home, xdg, ours = tmp_path / "home", tmp_path / "xdg-cache", tmp_path / "data" / "yt-dlp-cache"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    # The generic extractor caches nothing; stand in for one that does (YouTube caches its player code).
    real_extract = GenericIE._real_extract

    def caching_extract(self, url):
        self.cache.store("ytdlp-guard-test", "page", {"url": url})
        return real_extract(self, url)

    monkeypatch.setattr(GenericIE, "_real_extract", caching_extract)
    ytdlp.extract_info(site.url("page.html"), cache_dir=ours)
    assert [p.name for p in ours.rglob("*") if p.is_file()] == ["page.json"]
    _download(site.url("page.html"), tmp_path / "out", cache_dir=ours)
    # None: the cache is off, neither here nor under ~/.cache/yt-dlp
    ytdlp.extract_info(site.url("page.html"))
    _download(site.url("page.html"), tmp_path / "out2")
    assert not home.exists() and not xdg.exists()
    assert len([p for p in ours.rglob("*") if p.is_file()]) == 1


def test_options_leave_no_way_to_an_external_program(site, tmp_path, monkeypatch):
    seen: list[dict] = []

    class Recording(yt_dlp.YoutubeDL):
        def __init__(self, params=None, *args, **kwargs):
            seen.append(dict(params or {}))
            super().__init__(params, *args, **kwargs)

    selector_host = yt_dlp.YoutubeDL({"quiet": True})
    monkeypatch.setattr(yt_dlp, "YoutubeDL", Recording)
    ytdlp.extract_info(site.url("clip.wav"))
    _download(site.url("clip.wav"), tmp_path / "out")
    assert len(seen) == 2
    for options in seen:
        assert options["postprocessors"] == [] and options["fixup"] == "never"
        assert options["external_downloader"] == {"default": "native"}
        assert options["cachedir"] is False and options.get("cookiesfrombrowser") is None
        location = Path(options["ffmpeg_location"])
        assert location.is_dir() and not any(location.iterdir()), "ffmpeg's location holds no ffmpeg"
        # the format string, applied by yt-dlp's own selector: a native protocol or nothing
        assert "protocol~=" in options["format"]
        select = selector_host.build_format_selector(options["format"])

        def chosen(protocol: str, select=select) -> bool:
            formats = [
                {"format_id": "x", "url": "http://127.0.0.1/x", "protocol": protocol, "ext": "m4a", "vcodec": "none", "acodec": "aac"}
            ]
            return bool(list(select({"formats": formats, "has_merged_format": False, "incomplete_formats": False})))

        assert all(chosen(p) for p in ytdlp.NATIVE_PROTOCOLS)
        assert not any(chosen(p) for p in EXTERNAL_PROTOCOLS)
    assert yt_dlp.globals.plugin_dirs.value == [], "no plugins imported from the user's config dirs"
