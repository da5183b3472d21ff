"""yt-dlp: YouTube and the ~1,800 other sites it has extractors for.

yt-dlp is synchronous; these functions run in a worker thread and report
progress through a callback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import yt_dlp
from yt_dlp.utils import DownloadError

from transcription.downloader import netguard
from transcription.errors import InvalidArgument, Unavailable


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


def _base_options() -> dict:
    return {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        # a URL that is only a playlist: its first entry, not every one of them
        "playlist_items": "1",
        "socket_timeout": 30,
    }


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
    message = str(exc).removeprefix("ERROR: ").strip()
    if refused := _refusal_in(exc):  # the downloader's connect guard, deep in yt-dlp's HTTP stack
        return InvalidArgument(str(refused))
    if "Unsupported URL" in message or "is not a valid URL" in message:
        return InvalidArgument(f"no audio found at this URL ({message})")
    return Unavailable(f"yt-dlp could not fetch the media: {message}")


def _refuse_live(info: dict, *, incomplete: bool = False) -> str | None:
    """yt-dlp match_filter: a live stream never ends, so it is not downloaded."""
    if info.get("is_live"):
        return "live streams cannot be transcribed (the download would never end)"
    return None


def extract_info(url: str) -> dict:
    try:
        with yt_dlp.YoutubeDL({**_base_options(), "skip_download": True}) as ydl:
            info = ydl.extract_info(url, download=False)
    except DownloadError as exc:
        raise _error(exc) from exc
    return metadata_fields(ydl.sanitize_info(info))


def download(
    url: str,
    target_dir: Path,
    max_bytes: int,
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
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

    options = {
        **_base_options(),
        "format": "bestaudio/best",
        "outtmpl": str(target_dir / "media.%(ext)s"),
        "progress_hooks": [hook],
        "max_filesize": max_bytes,
        "match_filter": _refuse_live,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            info = ydl.sanitize_info(info)
    except DownloadError as exc:
        raise _error(exc) from exc
    files = [p for p in target_dir.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise InvalidArgument("yt-dlp found no downloadable audio (or it was larger than the size limit)")
    return files[0], metadata_fields(info)
