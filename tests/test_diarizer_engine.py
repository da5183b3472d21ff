"""The diarizer's core, in process: bundled weights, GE2E embeddings, the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SAMPLE_WAV, TESTDATA, read_audio
from transcription.bundled import BundledFile, BundledFileError
from transcription.diarizer import weights
from transcription.diarizer.embedding import MIN_NUM_SAMPLES, GE2ESpeakerEmbedding
from transcription.diarizer.engine import DiarizationEngine, turns_from_annotation
from transcription.speakers import Turn

SAMPLE_RTTM = TESTDATA / "pyannote-sample" / "sample.rttm"


def reference_turns() -> list[tuple[float, float, str]]:
    turns = []
    for line in SAMPLE_RTTM.read_text().splitlines():
        fields = line.split()
        turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    return turns


def der(turns: list[Turn], collar: float = 0.0) -> float:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for start, end, speaker in reference_turns():
        reference[Segment(start, end)] = speaker
    for index, turn in enumerate(turns):
        hypothesis[Segment(turn.start, turn.end), index] = turn.speaker
    uem = Timeline([Segment(0, 30)])
    return DiarizationErrorRate(collar=collar, skip_overlap=False)(reference, hypothesis, uem=uem)


@pytest.fixture(scope="module")
def engine() -> DiarizationEngine:
    engine = DiarizationEngine()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return read_audio(SAMPLE_WAV)


@pytest.fixture(scope="module")
def sample_turns(engine, sample):
    progress: list[tuple[str, float]] = []
    turns = engine.diarize(sample, progress=lambda stage, percent: progress.append((stage, percent)))
    return turns, progress


def test_bundled_weights_are_pinned_and_checked(tmp_path):
    assert weights.SEGMENTATION.locate().stat().st_size > 10_000_000
    tampered = BundledFile(weights.SPEAKER_ENCODER.parts, "0" * 64)
    with pytest.raises(BundledFileError, match="expected 0000"):
        tampered.locate()
    with pytest.raises(BundledFileError, match="not installed"):
        BundledFile.single("no_such_package_here", "x.bin", "0" * 64).locate()


def test_sample_has_two_speakers_and_low_der(sample_turns):
    turns, _ = sample_turns
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    # measured 6.8 % (collar 0) with the bundled pipeline; 15 % leaves room for
    # thread-count noise yet fails if segmentation or clustering breaks.
    assert der(turns) <= 0.15
    assert der(turns, collar=0.25) <= 0.10


def test_turns_are_sorted_and_named_by_first_appearance(sample_turns):
    turns, _ = sample_turns
    assert turns == sorted(turns, key=lambda t: (t.start, t.end))
    assert turns[0].speaker == "SPEAKER_00"
    assert all(0 <= t.start < t.end <= 30.01 for t in turns)


def test_progress_is_monotonic_and_ends_at_100(sample_turns):
    _, progress = sample_turns
    percents = [percent for _, percent in progress]
    assert percents == sorted(percents)
    assert progress[-1] == ("done", 100.0)
    assert {"segmentation", "embeddings"} <= {stage for stage, _ in progress}


def test_known_speaker_count_is_honoured(engine, sample):
    turns = engine.diarize(sample, num_speakers=1)
    assert {t.speaker for t in turns} == {"SPEAKER_00"}


def test_silence_yields_no_turns(engine):
    assert engine.diarize(np.zeros(16_000 * 5, dtype=np.float32)) == []


@pytest.mark.parametrize(
    "waveform, options, message",
    [
        (np.zeros(0, dtype=np.float32), {}, "empty"),
        (np.zeros((2, 16_000), dtype=np.float32), {}, "one-dimensional"),
        (np.full(16_000, np.nan, dtype=np.float32), {}, "NaN"),
        (np.zeros(16_000, dtype=np.float32), {"min_speakers": 3, "max_speakers": 2}, "larger"),
        (np.zeros(16_000, dtype=np.float32), {"num_speakers": 0}, "at least 1"),
    ],
)
def test_bad_input_is_a_value_error(engine, waveform, options, message):
    with pytest.raises(ValueError, match=message):
        engine.diarize(waveform, **options)


def test_ge2e_embeddings_tell_the_two_sample_speakers_apart(sample):
    model = GE2ESpeakerEmbedding.from_checkpoint(weights.SPEAKER_ENCODER.locate())
    by_speaker: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start, end, speaker in reference_turns():
            if end - start < 2.0:
                continue
            clip = torch.from_numpy(sample[int(start * 16_000) : int(end * 16_000)].copy())[None, None]
            by_speaker.setdefault(speaker, []).append(model(clip)[0].numpy())
    (a, b) = [np.stack(v) for v in by_speaker.values()]
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    # Each turn lies nearer its own speaker's centroid (computed without it) than
    # the other speaker's: what clustering relies on.
    correct = total = 0
    for own, other in ((a, b), (b, a)):
        for index, embedding in enumerate(own):
            rest = np.delete(own, index, axis=0)
            correct += int(embedding @ rest.mean(axis=0) > embedding @ other.mean(axis=0))
            total += 1
    assert correct / total >= 0.8, f"{correct}/{total} turns nearest their own speaker"


def test_ge2e_masks_select_frames_and_short_speech_is_nan(sample):
    model = GE2ESpeakerEmbedding.from_checkpoint(weights.SPEAKER_ENCODER.locate())
    chunk = torch.from_numpy(sample[: 16_000 * 5].copy())[None, None].repeat(2, 1, 1)
    masks = torch.zeros(2, 293)
    masks[0, :] = 1.0  # whole chunk
    masks[1, :3] = 1.0  # about 50 ms: too little speech to embed
    with torch.inference_mode():
        embeddings = model(chunk, weights=masks)
        unmasked = model(chunk[:1])
    assert embeddings.shape == (2, 256)
    assert torch.isfinite(embeddings[0]).all() and torch.isnan(embeddings[1]).all()
    assert torch.allclose(embeddings[0], unmasked[0], atol=1e-5)
    with pytest.raises(ValueError, match="at least"):
        model(torch.zeros(1, 1, MIN_NUM_SAMPLES - 1))


def test_turns_from_annotation_renames_by_first_appearance():
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    annotation[Segment(5, 6)] = "B"
    annotation[Segment(1, 2)] = "C"
    annotation[Segment(3, 4)] = "B"
    turns = turns_from_annotation(annotation)
    assert [(t.start, t.speaker) for t in turns] == [(1, "SPEAKER_00"), (3, "SPEAKER_01"), (5, "SPEAKER_01")]


@pytest.mark.parametrize("options, allowed", [({"max_speakers": 1}, {1}), ({"min_speakers": 3}, {3, 4, 5}), ({"num_speakers": 3}, {3})])
def test_speaker_count_bounds_hold(engine, sample, options, allowed):
    assert len({t.speaker for t in engine.diarize(sample, **options)}) in allowed
