"""Content-addressed audio store and URL cache, on local disk, bounded in bytes and age.

Layout under ``<data_dir>/downloads``::

    audio/<sha256>        the downloaded bytes, as served (the id is their sha256)
    audio/<sha256>.pcm    the canonical form the models read: 16 kHz mono s16le
                          PCM, no header, decoded once at fetch time
    audio/<sha256>.json   what was probed (format, duration, sizes); written
                          last, so an entry exists only once all three do. Its
                          mtime is the entry's last use, for LRU eviction.
    urls/<sha256(method + url)>.json   normalised URL -> content id + metadata
    tmp/                  partial downloads and conversions; swept at start-up

Every file is written to ``tmp/`` first and renamed into place, so a crash or
a failed download never leaves a half-written entry; files of an entry missing
one of its three (a process killed between renames, or a store from before the
canonical form) are swept at start-up.

Eviction (least recently used first, then anything older than the age limit)
never touches an entry that is being read or written: both hold a pin.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transcription.errors import InvalidArgument, NotFound, ResourceExhausted
from transcription.files import atomic_write_text

log = logging.getLogger(__name__)

CONTENT_ID = re.compile(r"^[0-9a-f]{64}$")
CANONICAL_SUFFIX = ".pcm"
# A write refused for want of room: the disk is full, a quota is spent, or a file-size limit is reached.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass
class StoredAudio:
    content_id: str
    size_bytes: int
    format: str
    duration_seconds: float
    canonical_size_bytes: int = 0


@dataclass
class UrlRecord:
    url: str  # normalised and redacted: safe to show
    content_id: str
    method: str = "auto"
    metadata: dict = field(default_factory=dict)
    fetched_at: float = 0.0


def url_key(url: str, method: str) -> str:
    """Cache key of a URL fetched one way: a yt-dlp fetch and a direct one differ in what they store."""
    return hashlib.sha256(f"{method}\n{url}".encode()).hexdigest()


@contextlib.contextmanager
def room_to_write() -> Iterator[None]:
    """Around writes to the store: running out of room is RESOURCE_EXHAUSTED with a clear message, not an internal error.

    What was being written is removed by its writer (temporary files are
    unlinked on the way out), so a full store holds only whole entries.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        log.error("the audio store has no room: %s", exc)
        raise ResourceExhausted(f"the audio store is full: cannot write the audio ({os.strerror(exc.errno)}); nothing was kept") from exc


def check_content_id(content_id: str) -> str:
    if not CONTENT_ID.match(content_id):
        raise InvalidArgument("content_id must be a sha256 digest: 64 lower-case hex characters")
    return content_id


class AudioStore:
    def __init__(self, root: Path, *, max_bytes: int = 0, max_age_seconds: float = 0.0):
        """``max_bytes``/``max_age_seconds``: limits enforced after each addition (0 = none)."""
        self.audio_dir = root / "audio"
        self.url_dir = root / "urls"
        self.tmp_dir = root / "tmp"
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        for directory in (self.audio_dir, self.url_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._pins: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()  # pins and eviction: readers run on several threads
        self._sweep_leftovers()
        self.enforce_limits()

    def _sweep_leftovers(self) -> None:
        """Remove partial downloads, and entries missing their record, a killed process left behind."""
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for path in self.audio_dir.iterdir():
            content_id = path.name.split(".", 1)[0]
            # (an entry from before the canonical form existed has a record but no .pcm: fetched again when asked for)
            whole = CONTENT_ID.match(content_id) and all(
                self.audio_dir.joinpath(content_id + s).exists() for s in ("", CANONICAL_SUFFIX, ".json")
            )
            if not whole:
                path.unlink(missing_ok=True)

    # -- temporary files -------------------------------------------------

    def new_tmp_file(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="part-", suffix=suffix)
        os.close(fd)
        return Path(name)

    def new_tmp_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="ytdlp-"))

    def _write_json(self, path: Path, data: dict) -> None:
        atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1), tmp_dir=self.tmp_dir)

    # -- pins ------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, content_id: str) -> Iterator[None]:
        """Keep an entry from eviction and clearing for the block (a read, or a write in progress)."""
        with self._lock:
            self._pins[content_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[content_id] -= 1
                if not self._pins[content_id]:
                    del self._pins[content_id]

    # -- audio -----------------------------------------------------------

    def audio_path(self, content_id: str, canonical: bool = False) -> Path:
        return self.audio_dir / (check_content_id(content_id) + (CANONICAL_SUFFIX if canonical else ""))

    def _meta_path(self, content_id: str) -> Path:
        return self.audio_dir / f"{content_id}.json"

    def add(self, original: Path, canonical: Path, content_id: str, format: str, duration_seconds: float) -> StoredAudio:
        """Move a verified download and its canonical form into the store (atomic renames, record last)."""
        with self.pinned(content_id):
            stored = StoredAudio(content_id, original.stat().st_size, format, duration_seconds, canonical.stat().st_size)
            os.replace(canonical, self.audio_path(content_id, canonical=True))
            os.replace(original, self.audio_path(content_id))  # same id, same bytes: replacing is harmless
            self._write_json(self._meta_path(content_id), asdict(stored))
        self.enforce_limits()
        return stored

    def get(self, content_id: str) -> StoredAudio | None:
        """The entry's record (marking it used), or None when it is not (completely) stored."""
        meta = self._meta_path(check_content_id(content_id))
        try:
            stored = StoredAudio(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if not (self.audio_path(content_id).exists() and self.audio_path(content_id, canonical=True).exists()):
            return None
        with contextlib.suppress(OSError):
            os.utime(meta)  # last use, for LRU
        return stored

    def has(self, content_id: str) -> bool:
        """Whether the entry is stored, without counting as a use."""
        return self._meta_path(check_content_id(content_id)).exists()

    @contextlib.contextmanager
    def open_audio(self, content_id: str, canonical: bool = False) -> Iterator:
        """The stored file, open for reading and pinned against eviction while open."""
        with self.pinned(content_id):
            if self.get(content_id) is None:
                raise NotFound(f"no stored audio with content id {content_id}")
            try:
                handle = self.audio_path(content_id, canonical).open("rb")
            except FileNotFoundError:
                raise NotFound(f"no stored audio with content id {content_id}") from None
            with handle:
                yield handle

    # -- URL cache -------------------------------------------------------

    def remember_url(self, key: str, record: UrlRecord) -> None:
        record.fetched_at = time.time()
        self._write_json(self.url_dir / f"{key}.json", asdict(record))

    def lookup_url(self, key: str) -> tuple[UrlRecord, StoredAudio] | None:
        """The cached record for a URL key, if its audio is still stored (a dead record is dropped)."""
        path = self.url_dir / f"{key}.json"
        try:
            record = UrlRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        stored = self.get(record.content_id)
        if stored is None:
            path.unlink(missing_ok=True)
            return None
        return record, stored

    # -- limits, stats, clear --------------------------------------------

    def _entries(self) -> list[tuple[float, str, int]]:
        """(last use, content id, bytes) of every complete entry, least recently used first."""
        entries = []
        for meta in self.audio_dir.glob("*.json"):
            content_id = meta.stem
            try:
                used = meta.stat().st_mtime
                size = sum(self.audio_dir.joinpath(content_id + s).stat().st_size for s in ("", CANONICAL_SUFFIX, ".json"))
            except OSError:
                continue  # incomplete or being removed
            entries.append((used, content_id, size))
        return sorted(entries)

    def _remove(self, content_id: str) -> tuple[int, int]:
        """Delete an entry, record first (so it stops being found); returns (files, bytes) deleted."""
        files = freed = 0
        for suffix in (".json", "", CANONICAL_SUFFIX):
            path = self.audio_dir / (content_id + suffix)
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                files, freed = files + 1, freed + size
        return files, freed

    def enforce_limits(self) -> list[str]:
        """Evict by age, then least recently used until under the byte limit; returns the ids evicted."""
        if not (self.max_bytes or self.max_age_seconds):
            return []
        evicted = []
        with self._lock:
            entries = self._entries()
            total = sum(size for _, _, size in entries)
            oldest_kept = time.time() - self.max_age_seconds
            # the newest entry stays: it was just fetched for someone who is about to read it
            for used, content_id, _ in entries[:-1]:
                too_old = self.max_age_seconds and used < oldest_kept
                too_big = self.max_bytes and total > self.max_bytes
                if not (too_old or too_big) or self._pins[content_id]:
                    continue
                total -= self._remove(content_id)[1]
                evicted.append(content_id)
        if evicted:
            self._drop_dead_urls()
        return evicted

    def _drop_dead_urls(self) -> None:
        for path in self.url_dir.glob("*.json"):
            try:
                content_id = json.loads(path.read_text())["content_id"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not self._meta_path(content_id).exists():
                path.unlink(missing_ok=True)

    def stats(self) -> dict[str, int]:
        entries = self._entries()
        urls = list(self.url_dir.glob("*.json"))
        url_bytes = sum(p.stat().st_size for p in urls if p.exists())
        return {"total_files": len(entries), "total_bytes": sum(s for _, _, s in entries) + url_bytes, "metadata_files": len(urls)}

    def clear(self) -> dict[str, int]:
        """Delete every URL record and every entry not being read or written at this moment."""
        deleted = freed = 0
        for path in self.url_dir.glob("*.json"):
            with contextlib.suppress(OSError):
                freed += path.stat().st_size
                path.unlink()
                deleted += 1
        with self._lock:
            for _, content_id, _ in self._entries():
                if not self._pins[content_id]:
                    files, size = self._remove(content_id)
                    deleted, freed = deleted + files, freed + size
        return {"files_deleted": deleted, "bytes_freed": freed}
