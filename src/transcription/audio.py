"""Audio decoding and audio-reference resolution shared by ASR and diarizer.

PyAV bundles FFmpeg's libraries, so any container the downloader stores (wav,
mp3, webm, m4a, flac, ...) decodes here without a system FFmpeg.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from typing import IO

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
        # max_size: the WAV demuxer's packets are 4 KiB by default, a Python round trip each; 1 MiB ones decode
        # a long WAV several times faster (other demuxers ignore the option)
        options = {"max_size": str(1 << 20)}
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), metadata_errors="ignore", options=options)
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


CANONICAL_BYTES_PER_SECOND = SAMPLE_RATE * 2  # 16 kHz mono s16le
# Inline audio (in the request message) is for short clips; longer files go through the store.
INLINE_MAX_SECONDS = 3600.0


def _s16_mono_blocks(container, sample_rate: int) -> Iterator[np.ndarray]:
    """The first audio stream as blocks of mono int16 samples at ``sample_rate``, one frame at a time."""
    if not container.streams.audio:
        raise InvalidArgument("the file has no audio stream")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    try:
        for frame in container.decode(audio=0):
            frame.pts = None  # let the resampler re-time frames of odd files
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1)
    except av.error.FFmpegError as exc:
        raise InvalidArgument(f"the audio could not be decoded ({exc.__class__.__name__})") from exc


def decode(source: bytes | str | PathLike, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (inline audio; stored audio is read canonical).

    With ``max_seconds``, a file that decodes to more is refused as soon as it
    passes the limit: a 60 kB FLAC can hold hours of samples.
    """
    limit = int(max_seconds * sample_rate) if max_seconds else None
    pieces, total = [], 0
    with _open(source) as container:
        for block in _s16_mono_blocks(container, sample_rate):
            total += block.size
            if limit is not None and total > limit:
                raise InvalidArgument(
                    f"inline audio is longer than the {format_duration(max_seconds)} limit; store it with the downloader's Upload "
                    "and send its content id"
                )
            pieces.append(block)
    if not pieces:
        raise InvalidArgument("the file holds no audio samples")
    return np.concatenate(pieces).astype(np.float32) / 32768.0


def write_canonical(source: str | PathLike, out: IO[bytes], max_seconds: float) -> int:
    """Decode ``source`` into ``out`` as 16 kHz mono s16le PCM, a frame at a time; returns the samples written.

    Memory stays at one decoded frame whatever the file's length. A file whose
    header understated its length is stopped as soon as it passes ``max_seconds``.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    written = 0
    with _open(source) as container:
        for block in _s16_mono_blocks(container, SAMPLE_RATE):
            written += block.size
            if written > limit:
                raise InvalidArgument(f"the audio is longer than the {format_duration(max_seconds)} limit")
            out.write(block.astype("<i2", copy=False).tobytes())
    if not written:
        raise InvalidArgument("the file holds no audio samples")
    return written


def pcm_to_float(data: bytes | memoryview, out: np.ndarray | None = None) -> np.ndarray:
    """Canonical s16le bytes -> float32 in [-1, 1), into ``out`` when given (no second copy)."""
    samples = np.frombuffer(data, dtype="<i2")
    if out is None:
        out = np.empty(samples.size, dtype=np.float32)
    np.multiply(samples, 1 / 32768.0, out=out, casting="unsafe")
    return out


async def resolve_samples(ref, downloader, start_seconds: float = 0.0, end_seconds: float = 0.0) -> np.ndarray:
    """The float32 16 kHz samples behind an `AudioRef` (``common_pb2.AudioRef``).

    Stored audio is read in its canonical form, chunk by chunk straight into one
    preallocated array: the only copy of the audio this process holds, and no
    decoding; optionally only a time range of it. Inline audio (clients without a
    downloader) is decoded here, whole.
    """
    if ref.WhichOneof("source") == "inline_audio":
        if not ref.inline_audio:
            raise InvalidArgument("inline audio is empty")
        return await asyncio.to_thread(decode, ref.inline_audio, SAMPLE_RATE, INLINE_MAX_SECONDS)
    if not ref.content_id:
        raise InvalidArgument("no audio given: set audio.content_id or audio.inline_audio")
    samples: np.ndarray | None = None
    begin = 0
    async for chunk in downloader.iter_audio(
        ref.content_id, canonical=True, chunk_size=1024 * 1024, start_seconds=start_seconds, end_seconds=end_seconds
    ):
        if samples is None:
            begin = chunk.offset  # a time range starts past 0
            end = min(chunk.total_size, 2 * round(end_seconds * SAMPLE_RATE)) if end_seconds else chunk.total_size
            samples = np.empty((end - begin) // 2, dtype=np.float32)
        first = (chunk.offset - begin) // 2
        pcm_to_float(chunk.data, samples[first : first + len(chunk.data) // 2])
    if samples is None or not samples.size:
        raise InvalidArgument("the stored audio holds no samples")
    return samples


def format_duration(seconds: float) -> str:
    """3725 -> "1 h 02 min 05 s"; for messages people read."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" + (f" {secs:02d} s" if secs else "")
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
