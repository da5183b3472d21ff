"""yt-dlp: YouTube and the ~1,800 other sites it has extractors for.

yt-dlp is synchronous; these functions run in a worker thread and report
progress through a callback.

The downloader's connect guard (``netguard.install_connect_guard``) sees every
TCP connection this process makes, but not those of a child process. So yt-dlp
is held to what it downloads itself, in this process: plain HTTP(S) and the
segments of HLS and DASH playlists. Media that needs ffmpeg, rtmpdump or any
other external program is refused rather than handed to one.
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import yt_dlp
import yt_dlp.globals
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
from yt_dlp.utils import DownloadError

from transcription import audio
from transcription.downloader import netguard, urls
from transcription.errors import InvalidArgument, Unavailable

# The protocols (yt-dlp's names) it downloads in-process: HttpFD, HlsFD and
# DashSegmentsFD. Every other one (rtmp*, rtsp, mms, f4m, ism, websocket_frag,
# and "m3u8", which means HLS through ffmpeg) runs a child process.
NATIVE_PROTOCOLS = frozenset({"http", "https", "m3u8_native", "http_dash_segments"})
_NATIVE_ONLY = f"[protocol~='^({'|'.join(sorted(NATIVE_PROTOCOLS))})$']"
FORMAT = f"bestaudio{_NATIVE_ONLY}/best{_NATIVE_ONLY}"
EXTERNAL_ONLY = (
    "this media can only be fetched with an external downloader (such as ffmpeg or rtmpdump),"
    " which is disabled in this service; only plain HTTP(S), HLS and DASH are supported"
)

# yt-dlp imports Python "plugins" from ~/.config/yt-dlp, ~/yt-dlp-plugins, /etc
# and sys.path when the first YoutubeDL is made: the library's only reading of
# user configuration (it reads no config files; that is the command line's job).
yt_dlp.globals.plugin_dirs.value = []


@functools.cache
def _site_extractors():
    return [ie for ie in yt_dlp.extractor.gen_extractor_classes() if ie.ie_key() != "Generic"]


def has_site_extractor(url: str) -> bool:
    """True when a dedicated extractor (not the generic one) claims the URL."""
    return any(ie.suitable(url) for ie in _site_extractors())


def metadata_fields(info: dict) -> dict:
    """yt-dlp's info dict -> MediaMetadata field names."""
    return {
        "title": info.get("title") or "",
        "duration_seconds": float(info.get("duration") or 0.0),
        "thumbnail_url": info.get("thumbnail") or "",
        "uploader": info.get("uploader") or info.get("channel") or "",
        "view_count": int(info.get("view_count") or 0),
        "upload_date": info.get("upload_date") or "",
        "description": info.get("description") or "",
        "webpage_url": info.get("webpage_url") or info.get("url") or "",
        "extractor": info.get("extractor_key") or info.get("extractor") or "",
    }


@functools.cache
def _no_ffmpeg_dir() -> str:
    """An empty directory of this process's own (mode 0700), given to yt-dlp as ffmpeg's location.

    Every fallback to ffmpeg (HlsFD hands SAMPLE-AES and other streams it cannot
    read to FFmpegFD; fixups and mergers are ffmpeg post-processors) then finds
    no ffmpeg and fails, instead of running the one on PATH. Should the directory
    vanish (a /tmp cleaner), yt-dlp treats a missing location as "no ffmpeg" too.
    """
    return tempfile.mkdtemp(prefix="yt-dlp-no-ffmpeg-")


def _options(cache_dir: Path | None) -> dict:
    return {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        # a URL that is only a playlist: its first entry, not every one of them
        "playlist_items": "1",
        "socket_timeout": 30,
        # only formats downloaded in-process are ever chosen (see NATIVE_PROTOCOLS)
        "format": FORMAT,
        # yt-dlp's own downloaders, never aria2c/curl/ffmpeg, even for HLS where an
        # extractor suggests ffmpeg ("native" is checked before hls_prefer_native)
        "external_downloader": {"default": "native"},
        # no ffmpeg post-processing: no conversion, no fixup of the downloaded file
        "postprocessors": [],
        "fixup": "never",
        "ffmpeg_location": _no_ffmpeg_dir(),
        # the service's data dir, or nowhere: never ~/.cache/yt-dlp
        "cachedir": str(cache_dir) if cache_dir is not None else False,
        "cookiesfrombrowser": None,
    }


@contextlib.contextmanager
def _youtube_dl(options: dict) -> Iterator[yt_dlp.YoutubeDL]:
    # Class-level checks (FFmpegFD.available(), which HlsFD calls before every native
    # HLS download) make an FFmpegPostProcessor without the options above: they read
    # ffmpeg's location from this context variable, as yt-dlp's command line sets it,
    # and otherwise run the ffmpeg on PATH to read its version.
    token = FFmpegPostProcessor._ffmpeg_location.set(options["ffmpeg_location"])
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            yield ydl
    except DownloadError as exc:
        raise _error(exc) from exc
    finally:
        FFmpegPostProcessor._ffmpeg_location.reset(token)


def _refusal_in(exc: BaseException) -> netguard.RefusedAddress | None:
    """The connect guard's refusal among the exceptions that caused ``exc``, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, netguard.RefusedAddress):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _error(exc: DownloadError) -> Exception:
    message = urls.redact_text(str(exc).removeprefix("ERROR: ").strip())  # yt-dlp quotes URLs, tokens and all
    if refused := _refusal_in(exc):  # the downloader's connect guard, deep in yt-dlp's HTTP stack
        return InvalidArgument(str(refused))
    if "Unsupported URL" in message or "is not a valid URL" in message:
        return InvalidArgument(f"no audio found at this URL ({message})")
    # FORMAT matches any format with a native protocol, so nothing left means none had one
    if "Requested format is not available" in message:
        return InvalidArgument(EXTERNAL_ONLY)
    # HlsFD's fallback to ffmpeg (SAMPLE-AES, ...) finding the empty ffmpeg location
    if re.search(r"\bffmpeg\b.*\bnot\b.*\bfound\b", message, re.IGNORECASE):
        return InvalidArgument(f"{EXTERNAL_ONLY} ({message})")
    return Unavailable(f"yt-dlp could not fetch the media: {message}")


def extract_info(url: str, *, cache_dir: Path | None = None) -> dict:
    with _youtube_dl({**_options(cache_dir), "skip_download": True}) as ydl:
        info = ydl.sanitize_info(ydl.extract_info(url, download=False))
    return metadata_fields(info)


def download(
    url: str,
    target_dir: Path,
    max_bytes: int,
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
    *,
    cache_dir: Path | None = None,
    max_duration_seconds: float | None = None,
) -> tuple[Path, dict]:
    """Download the best audio into ``target_dir``; returns (file, metadata fields)."""

    def hook(status: dict) -> None:
        if should_stop():
            raise InvalidArgument("download cancelled")
        if status.get("status") == "downloading":
            done = int(status.get("downloaded_bytes") or 0)
            # max_filesize below only works when the size is announced; streams
            # (HLS, DASH, chunked) are stopped here instead
            if done > max_bytes:
                raise InvalidArgument(f"the download exceeded the {max_bytes}-byte limit")
            total = status.get("total_bytes") or status.get("total_bytes_estimate") or 0
            on_progress(done, int(total))

    def match_filter(info: dict, *, incomplete: bool = False) -> str | None:
        """What may not be downloaded, checked before each download starts."""
        if info.get("is_live"):
            return "live streams cannot be transcribed (the download would never end)"
        duration = info.get("duration")
        if max_duration_seconds is not None and duration and duration > max_duration_seconds:
            raise InvalidArgument(
                f"the media is {audio.format_duration(duration)} long, over the {audio.format_duration(max_duration_seconds)} limit"
            )
        # A second lock behind FORMAT: once a format is chosen (incomplete is False),
        # its protocol must be one downloaded in-process. Raised, not returned: a
        # skipped video would only surface as "found no downloadable audio".
        if not incomplete and not set(str(info.get("protocol") or "").split("+")) <= NATIVE_PROTOCOLS:
            raise InvalidArgument(EXTERNAL_ONLY)
        return None

    options = {
        **_options(cache_dir),
        "outtmpl": str(target_dir / "media.%(ext)s"),
        "progress_hooks": [hook],
        "max_filesize": max_bytes,
        "match_filter": match_filter,
    }
    with _youtube_dl(options) as ydl:
        info = ydl.sanitize_info(ydl.extract_info(url, download=True))
    files = [p for p in target_dir.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise InvalidArgument("yt-dlp found no downloadable audio (or it was larger than the size limit)")
    return files[0], metadata_fields(info)
