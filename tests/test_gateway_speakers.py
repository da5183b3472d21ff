"""The gateway's use of transcription.speakers: chunks labelled per word and split where the speaker changes."""

from __future__ import annotations

from transcription.gateway.jobs import Job, JobRequest
from transcription.speakers import SpeakerTimeline, Turn


def chunk(words: list[tuple[str, float, float]], index: int = 7) -> dict:
    return {
        "type": "transcription_chunk",
        "id": index,
        "text": "".join(w for w, _, _ in words).strip(),
        "start": words[0][1],
        "end": words[-1][2],
        "speaker": None,
        "words": [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words],
    }


def job_with(turns: list[Turn]) -> Job:
    job = Job(JobRequest(url="http://media.test/x.wav"), clients=None, send=None)
    job.timeline = SpeakerTimeline(turns)
    return job


def test_a_segment_spanning_two_speakers_is_split_at_the_word_boundary():
    job = job_with([Turn(0, 2.0, "SPEAKER_00"), Turn(2.0, 5, "SPEAKER_01")])
    parts = job._with_speakers(
        chunk([(" Are", 0.0, 0.4), (" you", 0.4, 0.8), (" there?", 0.8, 1.6), (" Yes.", 2.1, 2.6), (" I", 2.8, 3.0), (" am.", 3.0, 3.4)])
    )
    assert [(p["id"], p["speaker"], p["text"], p["start"], p["end"]) for p in parts] == [
        (7, "SPEAKER_00", "Are you there?", 0.0, 1.6),
        ("7.1", "SPEAKER_01", "Yes. I am.", 2.1, 3.4),
    ]
    assert parts[1]["split_from"] == 7 and "split_from" not in parts[0]
    assert [w["speaker"] for p in parts for w in p["words"]] == ["SPEAKER_00"] * 3 + ["SPEAKER_01"] * 3


def test_a_one_speaker_segment_keeps_the_asr_text_and_times():
    job = job_with([Turn(0, 10, "SPEAKER_00")])
    original = chunk([(" Hello,", 0.5, 0.9), (" world.", 1.0, 1.4)])
    original["text"], original["end"] = "Hello, world.", 1.5  # the ASR's own segment end may differ from the last word's
    (part,) = job._with_speakers(dict(original))
    assert (part["id"], part["text"], part["end"], part["speaker"]) == (7, "Hello, world.", 1.5, "SPEAKER_00")


def test_without_words_the_segment_takes_the_speaker_of_greatest_overlap():
    job = job_with([Turn(0, 1, "SPEAKER_00"), Turn(1, 4, "SPEAKER_01")])
    plain = {"type": "transcription_chunk", "id": 3, "text": "x", "start": 0.5, "end": 3.0, "speaker": None}
    assert job._with_speakers(plain) == [{**plain, "speaker": "SPEAKER_01"}]
