"""Embedding resegmentation (diarizer/resegment.py): synthetic embeddings for the rules, CAM++ on real speech for the point."""

from __future__ import annotations

import numpy as np
import pytest
from test_diarizer_engine import reference_turns

from conftest import SAMPLE_WAV, TESTDATA, read_audio
from transcription.diarizer import resegment
from transcription.diarizer.embedding import CAMPPlusSpeakerEmbedding
from transcription.speakers import Turn

RATE = 16_000


def synthetic_embedder(truth: list[Turn], dim: int = 8, noise: float = 0.05, seed: int = 0):
    """Each window's embedding is the mix of the true speakers' directions over it, plus a little noise."""
    speakers = sorted({t.speaker for t in truth})
    directions = np.eye(dim)[: len(speakers)]
    rng = np.random.default_rng(seed)

    def embed(waveform, window, hop):
        duration = waveform.size / RATE
        starts = np.arange(0, duration - window + 1e-9, hop)
        if starts.size and starts[-1] + window < duration:  # as CAM++'s embed_windows: one more ends at the end
            starts = np.r_[starts, duration - window]
        rows = []
        for start in starts:
            mix = np.zeros(dim)
            for turn in truth:
                mix += max(0.0, min(turn.end, start + window) - max(turn.start, start)) * directions[speakers.index(turn.speaker)]
            mix = mix + noise * rng.standard_normal(dim)
            rows.append(mix / np.linalg.norm(mix))
        return starts, np.array(rows)

    return embed


def speaker_at(turns: list[Turn], t: float) -> set[str]:
    return {turn.speaker for turn in turns if turn.start <= t < turn.end}


TRUTH = [Turn(0, 10, "A"), Turn(10, 13, "B"), Turn(13, 20, "A"), Turn(20, 30, "B")]
SILENCE = np.zeros(30 * RATE, dtype=np.float32)  # the synthetic embedder never reads the samples


def test_a_missed_reply_is_given_back_to_its_speaker():
    merged = [Turn(0, 20, "A"), Turn(20, 30, "B")]  # the segmentation missed B's reply at 10-13 s
    turns = resegment.resegment(merged, SILENCE, RATE, synthetic_embedder(TRUTH))
    for t in np.arange(0.1, 30, 0.1):
        if min(abs(t - edge) for edge in (10, 13, 20)) > 0.5:  # boundaries move by up to a window
            assert speaker_at(turns, t) == speaker_at(TRUTH, t), f"at {t:.1f} s"


def test_speech_overlap_and_silence_stay_as_the_pipeline_found_them():
    given = [Turn(1, 9, "A"), Turn(7, 8, "B"), Turn(11, 14, "B"), Turn(16, 25, "A"), Turn(26, 29, "B")]
    turns = resegment.resegment(given, SILENCE, RATE, synthetic_embedder(given))
    for t in np.arange(0.05, 30, 0.05):
        assert bool(speaker_at(turns, t)) == bool(speaker_at(given, t)), f"speech changed at {t:.2f} s"
        if 7.05 < t < 7.95:
            assert speaker_at(turns, t) == {"A", "B"}, "the overlap keeps both speakers"
    assert Turn(7.0, 8.0, "B") in turns, "the overlapping turn comes back whole"
    assert len([turn for turn in turns if turn.speaker == "A" and turn.start < 8 and turn.end > 7]) == 1, (
        "A's turn is not cut at the overlap"
    )


def test_a_correct_diarization_is_left_alone():
    turns = resegment.resegment(TRUTH, SILENCE, RATE, synthetic_embedder(TRUTH, noise=0.0))
    assert [t.speaker for t in turns] == [t.speaker for t in TRUTH]
    for found, true in zip(turns, TRUTH):  # a boundary may move a few frames, where windows straddle it
        assert abs(found.start - true.start) <= 0.1 and abs(found.end - true.end) <= 0.1


@pytest.mark.parametrize(
    "turns, samples",
    [
        ([Turn(0, 30, "A")], 30 * RATE),  # one speaker: nothing to decide
        ([Turn(0, 0.3, "A"), Turn(0.3, 0.6, "B")], int(0.6 * RATE)),  # shorter than one window
        ([Turn(0, 29.7, "A"), Turn(29.7, 30, "B")], 30 * RATE),  # B has no window of its own
    ],
)
def test_what_cannot_be_resegmented_comes_back_unchanged(turns, samples):
    assert resegment.resegment(turns, np.zeros(samples, dtype=np.float32), RATE, synthetic_embedder(turns)) == turns


def test_no_speaker_is_lost():
    # B speaks too briefly to have a window of its own, so its frames would all go
    # to A or C: the pipeline's answer (and its speaker count) is kept instead
    given = [Turn(0, 20, "A"), Turn(20, 20.4, "B"), Turn(20.4, 30, "C")]
    assert resegment.resegment(given, SILENCE, RATE, synthetic_embedder(given)) == given


def test_a_speaker_heard_only_in_overlap_does_not_stop_the_others():
    given = [Turn(0, 10, "A"), Turn(4, 4.5, "C"), Turn(10, 20, "B")]  # B really starts at 6 s
    truth = [Turn(0, 6, "A"), Turn(4, 4.5, "C"), Turn(6, 20, "B")]
    turns = resegment.resegment(given, np.zeros(20 * RATE, dtype=np.float32), RATE, synthetic_embedder(truth))
    assert Turn(4.0, 4.5, "C") in turns
    for t in np.arange(6.5, 9.5, 0.1):
        assert speaker_at(turns, t) == {"B"}, f"at {t:.1f} s"


@pytest.fixture(scope="module")
def campplus() -> CAMPPlusSpeakerEmbedding:
    return CAMPPlusSpeakerEmbedding.bundled()


def test_window_embeddings_equal_each_window_embedded_alone(campplus):
    import torch

    audio = read_audio(SAMPLE_WAV)[: int(7.3 * RATE) + 77]  # not a whole number of frames
    window, hop = resegment.WINDOW_SECONDS, resegment.HOP_SECONDS
    starts, embeddings = campplus.embed_windows(audio, window, hop, batch_size=4)
    assert starts[-1] == pytest.approx(audio.size / RATE - window), "one more window ends at the last sample"
    assert np.allclose(np.diff(starts[:-1]), hop) and embeddings.shape == (len(starts), 192)
    length = round(window * RATE)
    with torch.inference_mode():
        for start, embedding in zip(starts, embeddings):
            alone = campplus(torch.from_numpy(audio[round(start * RATE) : round(start * RATE) + length].copy())[None, None])
            assert np.allclose(embedding, alone[0].numpy(), atol=1e-4)


def test_campplus_gives_a_mislabelled_turn_back_on_real_speech(campplus):
    """The AMI dev00 reference with two replies handed to the other speaker, as the segmentation model does."""
    reference = [Turn(*turn) for turn in reference_turns(TESTDATA / "ami-debug" / "debug.development.rttm", "dev00")]
    replies = [t for t in reference if t.speaker == "MEE012" and t.end - t.start > 1.0][1:]
    corrupted = [Turn(t.start, t.end, "MEE009") if t in replies else t for t in reference]
    audio = read_audio(TESTDATA / "ami-debug" / "dev00.wav")
    turns = resegment.resegment(corrupted, audio, RATE, campplus.embed_windows)

    def share_right(candidate: list[Turn]) -> float:
        probes = [t for reply in replies for t in np.arange(reply.start + 0.3, reply.end - 0.3, 0.05)]
        return np.mean(["MEE012" in speaker_at(candidate, t) for t in probes])

    assert share_right(corrupted) == 0
    assert share_right(turns) >= 0.9, f"{share_right(turns):.0%} of the replies given back"
