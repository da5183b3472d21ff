"""A result cache on disk: one JSON file per key, written atomically.

Used for transcripts (ASR) and diarizations (diarizer): results that are
expensive to compute and small to keep, keyed by the audio's content id plus
every option that changes them. A restarted service sweeps the temporary files
a killed one left; a corrupt or unreadable entry is a miss, never an error.
With ``max_bytes`` the cache is bounded: after each write the least recently
used entries (a hit counts as a use: it touches the file's mtime) are removed
until the rest fit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

from transcription.files import atomic_write_text, sweep_tmp_files


class JsonCache:
    def __init__(self, directory: Path, max_bytes: int = 0):
        self.directory = directory
        self.max_bytes = max_bytes  # 0 = unbounded
        directory.mkdir(parents=True, exist_ok=True)
        sweep_tmp_files(directory)
        self._bytes: int | None = None  # running total once known, so a write does not list the folder
        self.cache_id = _cache_id(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError):
            os.utime(self._path(key))  # last use, for LRU
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict) -> None:
        path = self._path(key)
        text = json.dumps(data, ensure_ascii=False)
        try:
            replaced = path.stat().st_size
        except OSError:
            replaced = 0
        atomic_write_text(path, text)
        if self.max_bytes:
            known = self._total() if self._bytes is None else self._bytes - replaced + len(text.encode())
            self._bytes = known
            if known > self.max_bytes:
                self._evict()

    def _total(self) -> int:
        return sum(f.stat().st_size for f in self.directory.glob("*.json"))

    def _evict(self) -> None:
        """Least recently used first, down to 90% of the limit (so eviction is not paid on every write)."""
        entries = []
        for f in self.directory.glob("*.json"):
            with contextlib.suppress(OSError):
                stat = f.stat()
                entries.append((stat.st_mtime, stat.st_size, f))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        for _, size, f in entries[:-1]:  # the newest entry stays, whatever its size
            if total <= 0.9 * self.max_bytes:
                break
            f.unlink(missing_ok=True)
            total -= size
        self._bytes = total

    def _sizes(self) -> dict[Path, int]:
        """Each entry's size; one another replica sharing the folder removes meanwhile is left out."""
        sizes = {}
        for f in self.directory.glob("*.json"):
            with contextlib.suppress(OSError):
                sizes[f] = f.stat().st_size
        return sizes

    def stats(self) -> dict[str, int]:
        sizes = self._sizes()
        return {"total_files": len(sizes), "total_bytes": sum(sizes.values()), "cache_id": self.cache_id}

    def clear(self) -> dict[str, int]:
        deleted = freed = 0
        for f, size in self._sizes().items():
            with contextlib.suppress(FileNotFoundError):  # a replica clearing the same folder got there first
                f.unlink()
                deleted, freed = deleted + 1, freed + size
        self._bytes = None
        return {"files_deleted": deleted, "bytes_freed": freed}


def _cache_id(directory: Path) -> str:
    """The folder's identity, made once by whichever process gets there first (replicas may share the folder)."""
    path = directory / ".cache-id"
    fd, mine = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # swept like any other if this process dies here
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(uuid.uuid4().hex)
        os.link(mine, path)  # atomic, and fails if another replica's id is already there: that one is kept
    except FileExistsError:
        pass
    finally:
        os.unlink(mine)
    return path.read_text(encoding="ascii").strip()
