"""Content-addressed audio store and URL cache, on local disk.

Layout under ``<data_dir>/downloads``::

    audio/<sha256>        the downloaded bytes, as served
    audio/<sha256>.json   what was probed: format, duration, size
    urls/<sha256(url)>.json   url -> content id + media metadata
    tmp/                  partial downloads; never read, swept at start-up

Every file is written to ``tmp/`` first and renamed into place, so a crash or
a failed download never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transcription.errors import InvalidArgument, NotFound
from transcription.files import atomic_write_text

CONTENT_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class StoredAudio:
    content_id: str
    size_bytes: int
    format: str
    duration_seconds: float


@dataclass
class UrlRecord:
    url: str
    content_id: str
    metadata: dict = field(default_factory=dict)
    fetched_at: float = 0.0


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def check_content_id(content_id: str) -> str:
    if not CONTENT_ID.match(content_id):
        raise InvalidArgument("content_id must be a sha256 digest: 64 lower-case hex characters")
    return content_id


class AudioStore:
    def __init__(self, root: Path):
        self.audio_dir = root / "audio"
        self.url_dir = root / "urls"
        self.tmp_dir = root / "tmp"
        for directory in (self.audio_dir, self.url_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        """Remove partial downloads a previous process left behind."""
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    # -- temporary files -------------------------------------------------

    def new_tmp_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="part-")
        os.close(fd)
        return Path(name)

    def new_tmp_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="ytdlp-"))

    def _write_json(self, path: Path, data: dict) -> None:
        atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1), tmp_dir=self.tmp_dir)

    # -- audio -----------------------------------------------------------

    def audio_path(self, content_id: str) -> Path:
        return self.audio_dir / check_content_id(content_id)

    def add(self, tmp_file: Path, content_id: str, format: str, duration_seconds: float) -> StoredAudio:
        """Move a finished, verified download into the store (atomic rename)."""
        final = self.audio_path(content_id)
        stored = StoredAudio(content_id, tmp_file.stat().st_size, format, duration_seconds)
        if final.exists():
            tmp_file.unlink(missing_ok=True)  # same bytes already stored
        else:
            os.replace(tmp_file, final)
        self._write_json(final.with_suffix(".json"), asdict(stored))
        return stored

    def get(self, content_id: str) -> StoredAudio | None:
        path = self.audio_path(content_id)
        meta = path.with_suffix(".json")
        if not (path.exists() and meta.exists()):
            return None
        try:
            return StoredAudio(**json.loads(meta.read_text()))
        except (ValueError, TypeError):
            return None

    def open_audio(self, content_id: str):
        try:
            return self.audio_path(content_id).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no stored audio with content id {content_id}") from None

    # -- URL cache -------------------------------------------------------

    def remember_url(self, url: str, content_id: str, metadata: dict) -> None:
        record = UrlRecord(url=url, content_id=content_id, metadata=metadata, fetched_at=time.time())
        self._write_json(self.url_dir / f"{url_key(url)}.json", asdict(record))

    def lookup_url(self, url: str) -> tuple[UrlRecord, StoredAudio] | None:
        """The cached record for a URL, if its audio is still stored."""
        path = self.url_dir / f"{url_key(url)}.json"
        try:
            record = UrlRecord(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if record.url != url:
            return None
        stored = self.get(record.content_id)
        return (record, stored) if stored else None

    # -- stats -----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        audio = [p for p in self.audio_dir.iterdir() if CONTENT_ID.match(p.name)]
        audio_meta = list(self.audio_dir.glob("*.json"))
        urls = list(self.url_dir.glob("*.json"))
        total = sum(p.stat().st_size for p in audio + audio_meta + urls)
        return {"total_files": len(audio), "total_bytes": total, "metadata_files": len(urls)}

    def clear(self) -> dict[str, int]:
        deleted = freed = 0
        for directory in (self.url_dir, self.audio_dir):
            for path in directory.iterdir():
                if path.is_file():
                    size = path.stat().st_size
                    path.unlink(missing_ok=True)
                    deleted += 1
                    freed += size
        return {"files_deleted": deleted, "bytes_freed": freed}
