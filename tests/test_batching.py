"""Concurrent batched transcriptions of one model share batches, and each gets what it would alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from faster_whisper import WhisperModel

from conftest import JFK_FLAC, SAMPLE_WAV, read_audio
from transcription.asr import batching, engine
from transcription.asr.models import BUNDLED, materialize_bundled


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = materialize_bundled(BUNDLED["tiny.en"], tmp_path_factory.mktemp("models"))
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(model, audio, options) -> str:
    events = []
    engine.transcribe(model, audio, options, events.append)
    return " ".join(e.text for e in events if isinstance(e, engine.Segment))


def test_concurrent_requests_share_batches_and_get_their_own_text(model):
    options = engine.Options(model="tiny.en", language="en", batch_size=8, beam_size=1)
    audios = [read_audio(SAMPLE_WAV)[: 16_000 * 11], read_audio(JFK_FLAC)]  # as long: their first batches are ready together
    alone = [transcribe(model, audio, options) for audio in audios]
    shared = model._shared_batches
    shared.gather_seconds = 0.5  # wide enough that both requests' first batches meet on a slow machine
    before = (shared.batches, shared.calls)
    together: list[str | None] = [None, None]
    start = threading.Barrier(2)

    def run(number):
        start.wait()
        together[number] = transcribe(model, audios[number], options)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert together == alone, "sharing a batch changes nobody's transcript"
    batches, calls = shared.batches - before[0], shared.calls - before[1]
    assert calls == 2 and batches == 1, f"{calls} forward calls ran as {batches} batches"


def test_word_timestamp_requests_never_share(model):
    options = engine.Options(model="tiny.en", language="en", batch_size=8, beam_size=1, word_timestamps=True)
    shared = batching.SharedBatches(gather_seconds=0.3)
    first = batching._Call(batching.SharingPipeline(model, shared, 8), read_audio(JFK_FLAC)[:10], None, [], options)
    assert not first.joins(first)


def test_an_error_reaches_every_caller_of_the_batch(model):
    shared = batching.SharedBatches(gather_seconds=0.0)
    pipeline = batching.SharingPipeline(model, shared, 8)
    options = engine.Options(model="tiny.en", language="en", batch_size=8)
    with pytest.raises(Exception):  # noqa: B017 - whatever forward raises on nonsense input, the caller gets it
        pipeline.forward(np.zeros((1, 3, 7), dtype=np.float32), None, [{"offset": 0, "duration": 1}], options)
    assert shared.batches == 1 and not shared._leading and not shared._waiting
