"""What a fetch reports while it runs (mapped to protobuf by the servicer)."""

from __future__ import annotations

from dataclasses import dataclass

from transcription.downloader.store import StoredAudio


@dataclass(frozen=True)
class Progress:
    bytes_done: int
    bytes_total: int  # 0 = unknown


@dataclass(frozen=True)
class CacheHit:
    url: str
    content_id: str


@dataclass(frozen=True)
class Metadata:
    fields: dict  # title, duration_seconds, thumbnail_url, uploader, ... (MediaMetadata names)


@dataclass(frozen=True)
class Ready:
    audio: StoredAudio
    from_cache: bool


FetchEvent = Progress | CacheHit | Metadata | Ready
