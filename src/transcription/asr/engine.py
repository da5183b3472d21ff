"""Run faster-whisper and report what it decodes, segment by segment.

faster-whisper's `transcribe` returns a lazy generator: each segment is
decoded only when asked for, so forwarding segments as they come out of the
generator is what makes the service stream (a 30-second window at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ctranslate2
import numpy as np

from transcription.audio import SAMPLE_RATE
from transcription.errors import InvalidArgument


@dataclass(frozen=True)
class Options:
    model: str
    language: str | None = None  # None = detect
    task: str = "transcribe"  # or "translate"
    beam_size: int = 5
    vad_filter: bool = True
    word_timestamps: bool = False
    initial_prompt: str | None = None
    engine: str = "faster-whisper"  # or "openai-whisper" (this module runs only the first)
    batch_size: int = 0  # > 0: faster-whisper's BatchedInferencePipeline, that many 30-s chunks at once
    temperatures: tuple[float, ...] = ()  # () = the engine's fallback ladder
    hotwords: str | None = None
    vad_parameters: tuple[tuple[str, float], ...] = ()  # (VadOptions field, value) pairs to change; () = defaults

    def cache_key(self) -> str:
        fields = (self.model, self.language, self.task, self.beam_size, self.vad_filter, self.word_timestamps, self.initial_prompt)
        if self.batch_size:
            fields += (f"batch{self.batch_size}",)
        # new options join the key only when set, so keys cached before they existed stay valid
        if self.temperatures:
            fields += ("t" + ",".join(f"{t:g}" for t in self.temperatures),)
        if self.hotwords:
            fields += (f"hot:{self.hotwords}",)
        if self.vad_parameters:
            fields += ("vad:" + ",".join(f"{k}={v:g}" for k, v in sorted(self.vad_parameters)),)
        # faster-whisper keys keep their old form, so transcripts cached before openai-whisper existed stay valid
        prefix = () if self.engine == "faster-whisper" else (self.engine,)
        return "|".join(str(v) for v in (*prefix, *fields))


@dataclass
class Started:
    language: str
    language_probability: float
    language_detected: bool
    duration_seconds: float
    model: str


@dataclass
class Progress:
    processed_seconds: float
    total_seconds: float


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    index: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None  # only from an engine that diarizes itself (Deepgram)


@dataclass
class Completed:
    segment_count: int
    processing_seconds: float
    audio_seconds: float
    language: str
    from_cache: bool = False


Event = Started | Progress | Segment | Completed


def shifted(event: Event, offset: float, length: float) -> Event | None:
    """``event`` in file time: a piece ``length`` seconds long, decoded on its own from ``offset`` on.

    Times are held inside the piece, and a segment that starts at or after its
    end is dropped (None): Whisper hallucinates past the end of its audio ("Hello."
    again and again at a cut), which would otherwise land in the next piece's time.
    """
    if not isinstance(event, Segment):
        return event
    if event.start >= length:
        return None

    def at(t: float) -> float:
        return round(min(max(t, 0.0), length) + offset, 3)

    words = [Word(at(w.start), at(w.end), w.word, w.probability) for w in event.words]
    return replace(event, start=at(event.start), end=at(event.end), words=words)


def transcribe(model, audio: np.ndarray, options: Options, emit: Callable[[Event], None]) -> None:
    """Decode ``audio`` (mono float32, 16 kHz) and ``emit`` events as they happen. Blocking."""
    if audio.ndim != 1 or audio.size == 0:
        raise InvalidArgument("the audio holds no samples")
    began = time.monotonic()
    duration = audio.size / SAMPLE_RATE
    if options.language and options.language not in model.supported_languages:
        raise InvalidArgument(
            f"language '{options.language}' is not supported by model {options.model}"
            + ("" if model.model.is_multilingual else " (an English-only model)")
        )
    common = {
        "language": options.language,
        "task": options.task,
        "beam_size": options.beam_size,
        "vad_parameters": {"min_silence_duration_ms": 500, **dict(options.vad_parameters)},
        "word_timestamps": options.word_timestamps,
        "initial_prompt": options.initial_prompt,
        "hotwords": options.hotwords,
    }
    if options.temperatures:
        common["temperature"] = list(options.temperatures)
    # The temperature fallback samples: a fixed seed makes the same audio decode to the same
    # text every time (on CPU, where one decode runs at a time), like the transcript cache does.
    ctranslate2.set_random_seed(0)
    if options.batch_size > 0:
        # Speech chunks (VAD always on here) decoded batch_size at a time: far higher throughput
        # on a GPU; segments come out as each batch completes, so the first arrives later.
        from transcription.asr import batching  # noqa: PLC0415 - imports faster-whisper

        # (concurrent requests of this model share batches: batching.py)
        pipeline = batching.pipeline_for(model, options.batch_size)
        segments, info = pipeline.transcribe(audio, batch_size=options.batch_size, vad_filter=True, **common)
    else:
        segments, info = model.transcribe(audio, vad_filter=options.vad_filter, **common)
    emit(
        Started(
            language=info.language,
            language_probability=float(info.language_probability) if options.language is None else 1.0,
            language_detected=options.language is None,
            duration_seconds=duration,
            model=options.model,
        )
    )
    count = 0
    for count, seg in enumerate(segments, start=1):
        emit(
            Segment(
                index=count - 1,
                start=round(seg.start, 3),
                end=round(seg.end, 3),
                text=seg.text.strip(),
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
                compression_ratio=seg.compression_ratio,
                words=[Word(w.start, w.end, w.word, w.probability) for w in (seg.words or [])],
            )
        )
        emit(Progress(processed_seconds=min(seg.end, duration), total_seconds=duration))
    emit(Progress(processed_seconds=duration, total_seconds=duration))
    emit(Completed(segment_count=count, processing_seconds=time.monotonic() - began, audio_seconds=duration, language=info.language))
