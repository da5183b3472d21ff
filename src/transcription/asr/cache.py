"""Transcript cache: the same audio with the same options is decoded once.

Keyed by the audio content id plus the options that change the transcript.
"""

from __future__ import annotations

from dataclasses import asdict

from transcription.asr.deepgram_engine import DeepgramOptions
from transcription.asr.engine import Completed, Options, Segment, Started, Word
from transcription.jsoncache import JsonCache


class TranscriptCache(JsonCache):
    def get_transcript(self, content_id: str, options: Options | DeepgramOptions) -> tuple[Started, list[Segment], Completed] | None:
        data = self.get(f"{content_id}|{options.cache_key()}")
        try:
            segments = [Segment(**{**s, "words": [Word(**w) for w in s["words"]]}) for s in data["segments"]]
            return Started(**data["started"]), segments, Completed(**data["completed"])
        except (KeyError, TypeError):  # a miss, or an entry of an older layout
            return None

    def put_transcript(
        self, content_id: str, options: Options | DeepgramOptions, started: Started, segments: list[Segment], completed: Completed
    ) -> None:
        data = {"started": asdict(started), "segments": [asdict(s) for s in segments], "completed": asdict(completed)}
        self.put(f"{content_id}|{options.cache_key()}", data)
