"""Where a long file is cut for fan-out: evenly, then moved into the nearest pause."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE_WAV, read_audio
from transcription.gateway import fanout


def test_ideal_cuts_and_pieces():
    assert fanout.ideal_cuts(120, 40) == [40, 80]
    assert fanout.ideal_cuts(100, 300) == [50], "a file over the threshold is cut at least once"
    assert fanout.pieces([40.0, 80.0]) == [(0.0, 40.0), (40.0, 80.0), (80.0, 0.0)]


def test_the_cut_moves_into_the_pause():
    rng = np.random.default_rng(1)
    window = (0.3 * rng.standard_normal(16_000 * 10)).astype(np.float32)  # ten seconds of "speech"
    window[int(16_000 * 7.2) : int(16_000 * 7.35)] = 0.001 * rng.standard_normal(int(16_000 * 0.15))  # a 150-ms pause
    pcm = (window * 32767).astype("<i2").tobytes()
    assert fanout.quietest_moment(pcm, window_start=35.0) == pytest.approx(42.27, abs=0.08)


def test_a_cut_in_real_speech_lands_where_it_is_quiet():
    speech = read_audio(SAMPLE_WAV)
    start = 5.0
    window = speech[int(start * 16_000) : int(15 * 16_000)]
    cut = fanout.quietest_moment((window * 32767).astype("<i2").tobytes(), start)
    around = speech[int((cut - 0.015) * 16_000) : int((cut + 0.015) * 16_000)]
    loudness = np.sqrt(np.mean(window**2))
    assert np.sqrt(np.mean(around**2)) < 0.05 * loudness, "the cut is in a pause, not through a word"


def test_a_piece_keeps_its_segments_inside_it():
    """What the ASR hallucinates past the end of a piece is dropped; times are held inside the piece, in file time."""
    from transcription.asr.engine import Segment, Word, shifted

    inside = Segment(
        index=0, start=1.0, end=12.5, text="a", avg_logprob=0, no_speech_prob=0, compression_ratio=1, words=[Word(11.0, 12.5, "a", 1)]
    )
    moved = shifted(inside, 40.0, 10.0)
    assert (moved.start, moved.end, moved.words[0].start, moved.words[0].end) == (41.0, 50.0, 50.0, 50.0)
    past_the_end = Segment(index=1, start=10.0, end=11.0, text="Hello.", avg_logprob=0, no_speech_prob=0, compression_ratio=1)
    assert shifted(past_the_end, 40.0, 10.0) is None
