"""A result cache on disk: one JSON file per key, written atomically.

Used for transcripts (ASR) and diarizations (diarizer): results that are
expensive to compute and small to keep, keyed by the audio's content id plus
every option that changes them. A restarted service sweeps the temporary files
a killed one left; a corrupt or unreadable entry is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from transcription.files import atomic_write_text, sweep_tmp_files


class JsonCache:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        sweep_tmp_files(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(data, ensure_ascii=False))

    def stats(self) -> dict[str, int]:
        files = list(self.directory.glob("*.json"))
        return {"total_files": len(files), "total_bytes": sum(f.stat().st_size for f in files)}

    def clear(self) -> dict[str, int]:
        files = list(self.directory.glob("*.json"))
        freed = sum(f.stat().st_size for f in files)
        for f in files:
            f.unlink(missing_ok=True)
        return {"files_deleted": len(files), "bytes_freed": freed}
