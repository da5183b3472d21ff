"""Transcript cache: the same audio with the same options is decoded once.

Keyed by sha256(audio content id + options); one JSON file per transcript,
written through a temporary file and a rename.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from transcription.asr.engine import Completed, Options, Segment, Started, Word
from transcription.files import atomic_write_text, sweep_tmp_files


class TranscriptCache:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        sweep_tmp_files(directory)  # from a process killed mid-write

    def _path(self, content_id: str, options: Options) -> Path:
        key = hashlib.sha256(f"{content_id}|{options.cache_key()}".encode()).hexdigest()
        return self.directory / f"{key}.json"

    def get(self, content_id: str, options: Options) -> tuple[Started, list[Segment], Completed] | None:
        try:
            data = json.loads(self._path(content_id, options).read_text())
            segments = [Segment(**{**s, "words": [Word(**w) for w in s["words"]]}) for s in data["segments"]]
            return Started(**data["started"]), segments, Completed(**data["completed"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def put(self, content_id: str, options: Options, started: Started, segments: list[Segment], completed: Completed) -> None:
        data = {"started": asdict(started), "segments": [asdict(s) for s in segments], "completed": asdict(completed)}
        atomic_write_text(self._path(content_id, options), json.dumps(data, ensure_ascii=False))

    def stats(self) -> dict[str, int]:
        files = list(self.directory.glob("*.json"))
        return {"total_files": len(files), "total_bytes": sum(f.stat().st_size for f in files)}

    def clear(self) -> dict[str, int]:
        files = list(self.directory.glob("*.json"))
        freed = sum(f.stat().st_size for f in files)
        for f in files:
            f.unlink(missing_ok=True)
        return {"files_deleted": len(files), "bytes_freed": freed}
