"""Audio decoding and audio-reference resolution shared by ASR and diarizer.

PyAV bundles FFmpeg's libraries, so any container the downloader stores (wav,
mp3, webm, m4a, flac, ...) decodes here without a system FFmpeg.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from os import PathLike

import av
import numpy as np

from transcription.errors import InvalidArgument

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Probe:
    format: str
    duration_seconds: float


def _open(source: bytes | str | PathLike):
    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidArgument(f"not a readable audio or video file ({exc.__class__.__name__})") from exc


def probe(source: bytes | str | PathLike) -> Probe:
    """Container format and duration; raises `InvalidArgument` without an audio stream."""
    with _open(source) as container:
        streams = container.streams.audio
        if not streams:
            raise InvalidArgument("the file has no audio stream")
        stream = streams[0]
        if container.duration:
            duration = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = 0.0
        return Probe(format=container.format.name.split(",")[0], duration_seconds=float(duration))


def decode(source: bytes | str | PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate``."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    pieces: list[np.ndarray] = []
    with _open(source) as container:
        if not container.streams.audio:
            raise InvalidArgument("the file has no audio stream")
        try:
            for frame in container.decode(audio=0):
                frame.pts = None  # let the resampler re-time frames of odd files
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise InvalidArgument(f"the audio could not be decoded ({exc.__class__.__name__})") from exc
    if not pieces:
        raise InvalidArgument("the file holds no audio samples")
    return np.concatenate(pieces).astype(np.float32) / 32768.0
