"""Run openai-whisper and report its transcript with the same events as the faster-whisper engine.

openai-whisper decodes the whole file in one ``transcribe`` call and returns
its segments at the end, so the segments come out together after it finishes
(progress is reported at the start and end). The bundled weights are the
project's CTranslate2 checkpoints converted to openai-whisper's format
(`transcription.asr.whisper_convert`); production can name openai-whisper's
own models instead. openai-whisper has no VAD filter: ``vad_filter`` is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from transcription.asr import engine
from transcription.audio import SAMPLE_RATE
from transcription.errors import InvalidArgument


def transcribe(model, audio: np.ndarray, options: engine.Options, emit: Callable[[engine.Event], None]) -> None:
    """Decode ``audio`` (mono float32, 16 kHz) with an openai-whisper model and ``emit`` events. Blocking."""
    import whisper

    if audio.ndim != 1 or audio.size == 0:
        raise InvalidArgument("the audio holds no samples")
    began = time.monotonic()
    duration = audio.size / SAMPLE_RATE
    emit(engine.Progress(processed_seconds=0.0, total_seconds=duration))
    language, probability = options.language, 1.0
    if language is not None and language not in whisper.tokenizer.LANGUAGES:
        raise InvalidArgument(f"language '{language}' is not supported by openai-whisper")
    if language is None and model.is_multilingual:
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), model.dims.n_mels).to(model.device)
        _, probabilities = model.detect_language(mel)
        language = max(probabilities, key=probabilities.get)
        probability = float(probabilities[language])
    elif language is None:
        language = "en"
    result = model.transcribe(
        audio,
        language=language,
        task=options.task,
        beam_size=options.beam_size if options.beam_size > 1 else None,  # None: greedy, openai-whisper's default
        word_timestamps=options.word_timestamps,
        initial_prompt=options.initial_prompt,
        **({"temperature": options.temperatures} if options.temperatures else {}),
        fp16=model.device.type == "cuda",
        verbose=None,
    )
    emit(
        engine.Started(
            language=language,
            language_probability=probability,
            language_detected=options.language is None,
            duration_seconds=duration,
            model=options.model,
        )
    )
    count = 0
    for count, seg in enumerate(result["segments"], start=1):
        words = [engine.Word(w["start"], w["end"], w["word"], w["probability"]) for w in seg.get("words", [])]
        emit(
            engine.Segment(
                index=count - 1,
                start=round(seg["start"], 3),
                end=round(seg["end"], 3),
                text=seg["text"].strip(),
                avg_logprob=seg["avg_logprob"],
                no_speech_prob=seg["no_speech_prob"],
                compression_ratio=seg["compression_ratio"],
                words=words,
            )
        )
        emit(engine.Progress(processed_seconds=min(seg["end"], duration), total_seconds=duration))
    emit(engine.Progress(processed_seconds=duration, total_seconds=duration))
    emit(engine.Completed(segment_count=count, processing_seconds=time.monotonic() - began, audio_seconds=duration, language=language))
