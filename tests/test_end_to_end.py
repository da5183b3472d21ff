"""The whole path, URL -> speaker-labelled transcript in the WebSocket, on real models."""

from __future__ import annotations

import json
import urllib.request

from conftest import SAMPLE_STM, final_segments, stm_text, wer, ws_job


def health(system) -> dict:
    with urllib.request.urlopen(f"{system.url}health", timeout=10) as response:
        return json.loads(response.read())


async def test_sample_with_diarization_then_cache_hit(system, media):
    url = media.url("e2e.wav")
    first = await ws_job(system, {"url": url, "model": "base", "language": None, "use_faster_whisper": True, "enable_diarization": True})

    assert first.messages[-1]["type"] == "complete", first.messages[-1]
    assert first.of("download_progress"), "a fresh download reports progress"
    assert not first.of("cached_file")
    assert media.count("e2e.wav") == 1

    segments = final_segments(first)
    assert segments, "no transcription_chunk arrived"
    transcript = " ".join(s["text"] for s in segments)
    assert wer(stm_text(SAMPLE_STM), transcript) <= 0.30, transcript

    # Speakers: diarization found the two, and every segment carries one once it is done.
    updates = first.of("speaker_update")
    assert len(updates) == 1
    assert updates[0]["num_speakers"] == 2
    assert len({t["speaker"] for t in updates[0]["turns"]}) == 2
    assert all(s["speaker"] in ("SPEAKER_00", "SPEAKER_01") for s in segments), segments
    assert first.messages[-1]["num_speakers"] == 2
    # Segments are sent as decoded, before the speakers are known, and keep their ids.
    assert [c["id"] for c in first.of("transcription_chunk")] == list(range(len(segments)))

    second = await ws_job(system, {"url": url, "model": "base", "use_faster_whisper": True, "enable_diarization": True})
    assert second.messages[-1]["type"] == "complete"
    assert second.of("cached_file"), "the second run must report the cache hit"
    assert not second.of("download_progress")
    assert media.count("e2e.wav") == 1, "the second run downloaded the file again"
    assert [s["text"] for s in final_segments(second)] == [s["text"] for s in segments]
    assert health(system)["status"] == "healthy"


async def test_segments_stream_while_later_windows_decode(system, media):
    """Two minutes of audio (four 30-s windows): chunks must arrive spread out, not in one batch."""
    received = await ws_job(system, {"url": media.url("ami-2min.wav"), "model": "base", "language": "en", "enable_diarization": False})
    assert received.messages[-1]["type"] == "complete", received.messages[-1]

    chunks = received.of("transcription_chunk")
    assert len(chunks) >= 4
    assert max(c["end"] for c in chunks) > 90, "the transcript must reach the last window"

    # The first segment reaches the client while the rest is still being decoded:
    # progress reports for later audio arrive between the first and the last chunk.
    # (Message order, not timing: how fast this is belongs to `make bench`.)
    first, last = received.messages.index(chunks[0]), received.messages.index(chunks[-1])
    progress_between = [m["progress"] for m in received.messages[first:last] if m["type"] == "transcription_progress"]
    assert progress_between and min(progress_between) < 100, "all segments arrived in one burst at the end"
    # ... and when it arrived, progress was far from done.
    index = received.messages.index(chunks[0])
    progress_before = [m["progress"] for m in received.messages[:index] if m["type"] == "transcription_progress"]
    assert not progress_before or max(progress_before) < 50
    # The segments that came first cover the start of the audio, not the end.
    assert chunks[0]["start"] < 30


async def test_word_timestamps_give_every_word_a_speaker_and_split_segments_at_speaker_changes(system, media):
    received = await ws_job(system, {"url": media.url("sample.wav"), "model": "base", "word_timestamps": True, "enable_diarization": True})
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    (update,) = received.of("speaker_update")
    segments = final_segments(received)
    words = [w for s in segments for w in s["words"]]
    assert words and all(w["speaker"] in ("SPEAKER_00", "SPEAKER_01") for w in words)
    for segment in segments:
        assert {w["speaker"] for w in segment["words"]} == {segment["speaker"]}, segment
        assert segment["start"] <= segment["words"][0]["start"] and segment["words"][-1]["end"] <= segment["end"] + 1e-6
    # Splitting moves words between segments, never loses or doubles them.
    assert wer(stm_text(SAMPLE_STM), " ".join(s["text"] for s in segments)) <= 0.30
    assert [w["word"] for s in segments for w in s["words"]] == [w["word"] for c in received.of("transcription_chunk") for w in c["words"]]
    assert update["exclusive_turns"] and all(
        a["end"] <= b["start"] for a, b in zip(update["exclusive_turns"], update["exclusive_turns"][1:])
    )


async def test_use_faster_whisper_false_selects_openai_whisper(system, media):
    """The reference app's switch keeps its meaning."""
    received = await ws_job(system, {"url": media.url("jfk.flac"), "model": "tiny.en", "use_faster_whisper": False})
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    (processing,) = [m for m in received.of("transcription_status") if m["status"] == "processing"]
    assert processing["backend"] == "openai-whisper"
    assert "ask not what your country can do for you" in " ".join(c["text"] for c in received.of("transcription_chunk")).lower()
