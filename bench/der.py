"""Diarization error rate of the diarizer engine on the test recordings (tests/data).

Scores ``transcription.diarizer.engine`` (the bundled offline pipeline unless DIARIZER_PIPELINE
says otherwise) with pyannote.metrics, at collar 0 (overlap scored, the setting
of published pyannote benchmarks) and collar 0.25 s, inside each file's UEM:

* ``sample``: the pyannote sample (2 speakers, 30 s);
* ``dev00``, ``dev01``, ``tst00``: AMI debug clips (2, 2 and 4 speakers, 30 s);
  tst01 is left out, its reference labels only a few turns;
* ``ami-dev-1min``: dev00 + dev01 joined (the same 2 speakers across 60 s),
  which catches the over-splitting a threshold tuned on 30 s clips can show.

Each file runs twice: speaker count unknown, and given (``num_speakers``).

    .venv/bin/python bench/der.py     # make bench runs it too
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("TESTDATA_DIR") or ROOT / "tests" / "data")

from transcription import audio as audio_io  # noqa: E402
from transcription.devices import pick_device  # noqa: E402
from transcription.diarizer.engine import DiarizationEngine  # noqa: E402


@dataclass
class Recording:
    name: str
    waveform: np.ndarray
    reference: object  # pyannote.core.Annotation
    uem: object  # pyannote.core.Timeline

    @property
    def num_speakers(self) -> int:
        return len(self.reference.labels())


def read_rttm(path: Path, uri: str, offset: float = 0.0):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER" and fields[1] == uri:
            start, duration = float(fields[3]), float(fields[4])
            annotation[Segment(offset + start, offset + start + duration)] = fields[7]
    return annotation


def recordings() -> list[Recording]:
    from pyannote.core import Annotation, Segment, Timeline

    def load(path: Path) -> np.ndarray:
        return audio_io.decode(path.read_bytes())

    def whole(waveform: np.ndarray) -> Timeline:
        return Timeline([Segment(0, waveform.size / audio_io.SAMPLE_RATE)])

    sample_dir = TESTDATA / "pyannote-sample"
    sample = load(sample_dir / "sample.wav")
    found = [Recording("sample", sample, read_rttm(sample_dir / "sample.rttm", "sample"), whole(sample))]

    ami = TESTDATA / "ami-debug"
    clips = {}
    for name, rttm in (("dev00", "development"), ("dev01", "development"), ("tst00", "test")):
        clips[name] = (load(ami / f"{name}.wav"), read_rttm(ami / f"debug.{rttm}.rttm", name))
        found.append(Recording(name, clips[name][0], clips[name][1], whole(clips[name][0])))

    joined = np.concatenate([clips["dev00"][0], clips["dev01"][0]])
    reference = Annotation(uri="ami-dev-1min")
    offset = 0.0
    for name in ("dev00", "dev01"):
        waveform, annotation = clips[name]
        for segment, _, label in annotation.itertracks(yield_label=True):
            reference[Segment(segment.start + offset, segment.end + offset)] = label
        offset += waveform.size / audio_io.SAMPLE_RATE
    found.append(Recording("ami-dev-1min", joined, reference, whole(joined)))
    return found


def hypothesis(turns, uri: str):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for index, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), index] = turn.speaker
    return annotation


def score(recording: Recording, turns) -> tuple[float, float]:
    from pyannote.metrics.diarization import DiarizationErrorRate

    hyp = hypothesis(turns, recording.name)
    return tuple(
        DiarizationErrorRate(collar=collar, skip_overlap=False)(recording.reference, hyp, uem=recording.uem) for collar in (0.0, 0.25)
    )


HEADER = ("file", "speaker count", "true speakers", "found", "DER collar 0", "DER collar 0.25", "× real time")


def measure() -> list[tuple]:
    """One row per (recording, speaker count unknown/given)."""
    engine = DiarizationEngine(
        pipeline=os.environ.get("DIARIZER_PIPELINE", "bundled"), device=pick_device(os.environ.get("DIARIZER_DEVICE", "cpu"))
    )
    engine.load()
    rows = []
    for recording in recordings():
        for known in (False, True):
            began = time.monotonic()
            turns = engine.diarize(recording.waveform, num_speakers=recording.num_speakers if known else None)
            elapsed = time.monotonic() - began
            der0, der25 = score(recording, turns)
            found = len({t.speaker for t in turns})
            seconds = recording.waveform.size / audio_io.SAMPLE_RATE
            rows.append((recording.name, "given" if known else "unknown", recording.num_speakers, found, der0, der25, seconds / elapsed))
    return rows


def markdown(rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name, mode, true, found, der0, der25, speed in rows:
        lines.append(f"| {name} | {mode} | {true} | {found} | {der0:.1%} | {der25:.1%} | {speed:.1f} |")
    return lines


def measure_threads(counts: tuple[int, ...] = (1, 2)) -> list[tuple[int, float]]:
    """(torch threads, × real time) on the 60-s development join, count unknown, after a warm-up."""
    import torch

    joined = next(r for r in recordings() if r.name == "ami-dev-1min")
    seconds = joined.waveform.size / audio_io.SAMPLE_RATE
    before = torch.get_num_threads()
    rows = []
    try:
        for threads in counts:
            engine = DiarizationEngine(pipeline=os.environ.get("DIARIZER_PIPELINE", "bundled"), device="cpu", num_threads=threads)
            engine.load()  # sets the process's torch thread count
            engine.diarize(joined.waveform[: 5 * audio_io.SAMPLE_RATE])
            began = time.monotonic()
            engine.diarize(joined.waveform)
            rows.append((threads, seconds / (time.monotonic() - began)))
    finally:
        torch.set_num_threads(before)
    return rows


def threads_markdown(rows: list[tuple[int, float]]) -> list[str]:
    lines = ["| torch threads | × real time | × 1 thread |", "|---|---|---|"]
    for threads, speed in rows:
        lines.append(f"| {threads} | {speed:.1f} | {speed / rows[0][1]:.2f} |")
    return lines


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("\n".join(markdown(measure())))
    print()
    print("\n".join(threads_markdown(measure_threads())))


if __name__ == "__main__":
    main()
