"""ASR engines side by side, in one run on the same audio: real-time factors and ratios.

* real-time factor per engine, model and compute type (faster-whisper int8 and
  float32, openai-whisper fp32 on the converted bundled weights);
* openai-whisper against faster-whisper on the same model and audio
  (faster-whisper's published CPU ratios: 2.7x at fp32, 4.1x at int8);
* batched (BatchedInferencePipeline) against sequential decoding: time on the
  AMI join, WER of both against the human reference of the pyannote sample.

All in-process, greedy decoding for both engines (openai-whisper's default;
beam search in torch on CPU is many times slower), language given. The
service's overhead over in-process decoding, and concurrency, are in
bench/run.py.

    .venv/bin/python bench/asr.py      # make bench runs it too; ASR_DEVICE=cuda on a GPU
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import der  # noqa: E402  (bench/ is on sys.path when this runs from it)
import numpy as np

from transcription import audio as audio_io
from transcription.asr.models import BUNDLED, materialize_bundled
from transcription.devices import pick_device

AMI = der.TESTDATA / "ami-debug"
SAMPLE = der.TESTDATA / "pyannote-sample" / "sample.wav"


def sample_reference() -> str:
    stm = der.TESTDATA / "pyannote-sample" / "sample.stm"
    return " ".join(line.split(maxsplit=5)[5] for line in stm.read_text().splitlines() if line.strip())


SAMPLE = der.TESTDATA / "pyannote-sample" / "sample.wav"


def der_reference_text() -> str:
    stm = der.TESTDATA / "pyannote-sample" / "sample.stm"
    return " ".join(line.split(maxsplit=5)[5] for line in stm.read_text().splitlines() if line.strip())


def ami_join() -> np.ndarray:
    return np.concatenate([audio_io.decode(AMI / f"{name}.wav") for name in ("dev00", "dev01", "tst00", "tst01")])


def timed(function) -> tuple[float, str]:
    began = time.perf_counter()
    text = function()
    return time.perf_counter() - began, text


def measure() -> list[tuple[str, str, str, float, float, str]]:
    """Rows: (engine, model, compute, seconds, × real time, note)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from transcription.asr import whisper_convert

    device = pick_device(os.environ.get("ASR_DEVICE", "auto"))
    threads = int(os.environ.get("ASR_CPU_THREADS") or os.cpu_count() or 1)
    data = Path(tempfile.mkdtemp(prefix="bench-asr-"))
    pcm = ami_join()
    seconds = pcm.size / audio_io.SAMPLE_RATE
    rows = []

    def faster(model, batch: int = 0, audio: np.ndarray = pcm) -> str:
        options = {"language": "en", "beam_size": 1, "vad_parameters": {"min_silence_duration_ms": 500}}
        if batch:
            segments, _ = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch, **options)
        else:
            segments, _ = model.transcribe(audio, vad_filter=True, **options)
        return " ".join(s.text for s in segments)

    computes = ["float16", "int8_float16"] if device == "cuda" else ["int8", "float32"]
    for name in ("base", "tiny.en"):
        directory = materialize_bundled(BUNDLED[name], data / "models")
        for compute in computes:
            model = WhisperModel(str(directory), device=device, compute_type=compute, cpu_threads=threads)
            faster(model)  # warm-up
            elapsed, _ = timed(lambda m=model: faster(m))
            rows.append(("faster-whisper", name, compute, elapsed, seconds / elapsed, "sequential"))
            if name == "base" and compute == computes[0]:
                elapsed, _ = timed(lambda m=model: faster(m, batch=8))
                # accuracy against the sample's human reference (the AMI clips have none here)
                sample, reference = audio_io.decode(SAMPLE), sample_reference()
                accuracy = ", ".join(
                    f"{label} {wer(reference, faster(model, batch=size, audio=sample)):.1%}"
                    for label, size in (("sequential", 0), ("batched", 8))
                )
                rows.append(("faster-whisper", name, compute, elapsed, seconds / elapsed, f"batched 8; WER on the sample: {accuracy}"))
                rows += four_requests(model, pcm)
        if device != "cuda":
            import torch

            torch.set_num_threads(threads)
        whisper_model = whisper_convert.load_model(directory, data / "openai-whisper", device=device)
        fp16 = device == "cuda"
        whisper_model.transcribe(pcm[: 16_000 * 5], language="en", fp16=fp16)  # warm-up
        elapsed, _ = timed(
            lambda m=whisper_model, half=fp16: " ".join(s["text"] for s in m.transcribe(pcm, language="en", fp16=half)["segments"])
        )
        rows.append(("openai-whisper", name, "float16" if fp16 else "float32", elapsed, seconds / elapsed, "converted bundled weights"))
    return rows


def four_requests(model, pcm: np.ndarray) -> list[tuple]:
    """Four 30-s requests in a row against the same four at once (threads sharing batches: asr/batching.py)."""
    import threading

    from transcription.asr import engine

    options = engine.Options(model="base", language="en", beam_size=1, batch_size=8)
    pieces = [pcm[i * 16_000 * 30 : (i + 1) * 16_000 * 30] for i in range(4)]
    seconds = sum(p.size for p in pieces) / audio_io.SAMPLE_RATE

    def one(audio) -> None:
        engine.transcribe(model, audio, options, lambda event: None)

    one(pieces[0])  # warm-up
    in_a_row, _ = timed(lambda: [one(p) for p in pieces])
    shared = engine_shared(model)
    before = (shared.batches, shared.calls) if shared else (0, 0)

    def at_once() -> None:
        threads = [threading.Thread(target=one, args=(p,)) for p in pieces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    together, _ = timed(at_once)
    shared = engine_shared(model)
    batches, calls = shared.batches - before[0], shared.calls - before[1]
    note = f"4 requests of 30 s at once, {calls} batch calls run as {batches} batches; {in_a_row / together:.2f}× the rate in a row"
    return [
        ("faster-whisper", "base", "int8", in_a_row, seconds / in_a_row, "4 requests of 30 s in a row, batched 8"),
        ("faster-whisper", "base", "int8", together, seconds / together, note),
    ]


def engine_shared(model):
    return getattr(model, "_shared_batches", None)


def wer(reference: str, hypothesis: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import wer as scored  # the suite's normalisation

    return scored(reference, hypothesis)


def markdown(rows) -> list[str]:
    lines = [
        "| engine | model | compute | time | × real time | × faster-whisper same model and compute class | note |",
        "|---|---|---|---|---|---|---|",
    ]
    best = {
        (model, "fp32" if compute in ("float32", "float16") else "int8"): t
        for engine, model, compute, t, _, note in rows
        if engine == "faster-whisper" and note == "sequential"
    }
    for engine, model, compute, elapsed, speed, note in rows:
        reference = best.get((model, "fp32" if compute in ("float32", "float16") else "int8"))
        ratio = f"{elapsed / reference:.2f}" if reference else ""
        lines.append(f"| {engine} | {model} | {compute} | {elapsed:.2f} s | {speed:.1f} | {ratio} | {note} |")
    return lines


if __name__ == "__main__":
    print("\n".join(markdown(measure())))
