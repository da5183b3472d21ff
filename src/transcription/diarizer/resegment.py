"""Embedding resegmentation: who speaks in each single-speaker stretch, decided again frame by frame.

pyannote's pipeline finds speaker changes with its segmentation model, inside
5-s windows, and clustering only names the local speakers it found. On
far-field meeting audio that model misses short replies: on AMI dev00 a 1-s
and a 2-s reply were given to the other speaker, most of the clip's 19 %
confusion. Resegmentation looks again with the speaker embedding:

1. CAM++ embeds short windows (``WINDOW_SECONDS`` long, every ``HOP_SECONDS``)
   across the whole recording, one filterbank pass per batch of windows;
2. each speaker's centroid is the mean embedding of the windows at least
   ``PURITY`` of which is that speaker alone (a speaker with no such window,
   heard only in overlaps or too briefly, is not a candidate);
3. each frame where exactly one speaker talks goes to the speaker whose
   centroid is nearest (cosine) the windows covering it, smoothed over
   ``SMOOTHING_SECONDS``; steps 2 and 3 run ``ITERATIONS`` times.

Where speech is, and overlapped stretches, stay as the pipeline found them;
so does the set of speakers (a result that would lose one is not used), and
frames no window covers keep their speaker.
Settings chosen on the AMI development clips only (``bench/tune_diarizer.py``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np

from transcription.speakers import Turn

# bench/tune_diarizer.py --resegmentation over 270 settings: mean development DER
# 14.2-16.9 % for every window of 0.75-1.5 s with two or three iterations (a
# flat optimum; one iteration or 2-s windows reach 20 %). Chosen: 0.75-s
# windows at a 0.5-s hop (14.9 %), within a point of the best (14.2 %, 1.5-s
# windows) at half its embedding cost.
WINDOW_SECONDS = 0.75
HOP_SECONDS = 0.5
SMOOTHING_SECONDS = 0.5
ITERATIONS = 3
PURITY = 0.8
FRAME_SECONDS = 0.02  # the grid labels are decided on
VERSION = 1  # raise when the method changes: cached diarizations made by the old one are then not reused

# (window start times in seconds, L2-normalised embeddings one row per window)
WindowEmbedder = Callable[[np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]


def settings() -> dict[str, float]:
    """What results depend on: part of the diarizer's cache identity."""
    return {
        "version": VERSION,
        "frame": FRAME_SECONDS,
        "window": WINDOW_SECONDS,
        "hop": HOP_SECONDS,
        "smoothing": SMOOTHING_SECONDS,
        "iterations": ITERATIONS,
        "purity": PURITY,
    }


def resegment(turns: Sequence[Turn], waveform: np.ndarray, sample_rate: int, embed_windows: WindowEmbedder) -> list[Turn]:
    """Turns with the speaker of every single-speaker frame decided again; see the module docstring."""
    speakers = sorted({t.speaker for t in turns})
    duration = waveform.size / sample_rate
    if len(speakers) < 2 or duration < WINDOW_SECONDS:
        return list(turns)
    activity = _frame_activity(turns, speakers, duration)
    active = activity.sum(axis=1)
    single = active == 1
    if not single.any():
        return list(turns)
    starts, embeddings = embed_windows(waveform, WINDOW_SECONDS, HOP_SECONDS)
    windows = _window_frames(starts, activity.shape[0])
    covering = _covering(windows, activity.shape[0])
    original = np.where(single, activity.argmax(axis=1), -1)  # -1: silence or overlap, never relabelled
    labels = original
    for _ in range(ITERATIONS):
        described, centroids = _centroids(embeddings, windows, labels, len(speakers))
        if len(described) < 2:  # nothing to choose between
            return list(turns)
        # speakers without a window of their own (heard only in overlaps, or too briefly) are not candidates
        scores = _smooth(_frame_scores(embeddings @ centroids.T, windows, covering))
        labels = np.where(single & (covering > 0), described[scores.argmax(axis=1)], original)
    overlap_speakers = set(np.flatnonzero(activity[active > 1].any(axis=0)).tolist())
    if len(set(labels[single].tolist()) | overlap_speakers) < len(speakers):
        return list(turns)  # a speaker would vanish: keep the pipeline's answer (and its speaker count)
    return _turns(turns, labels, speakers, active > 1)


def _frame_activity(turns: Sequence[Turn], speakers: list[str], duration: float) -> np.ndarray:
    """(frames, speakers) 0/1: who talks in each frame."""
    frames = int(np.ceil(duration / FRAME_SECONDS))
    activity = np.zeros((frames, len(speakers)), dtype=np.int8)
    index = {speaker: k for k, speaker in enumerate(speakers)}
    for turn in turns:
        first, last = _frame(turn.start), min(_frame(turn.end), frames)
        activity[first:last, index[turn.speaker]] = 1
    return activity


def _frame(seconds: float) -> int:
    return int(round(seconds / FRAME_SECONDS))


def _window_frames(starts: np.ndarray, frames: int) -> np.ndarray:
    """(windows, 2): the frame range [first, last) each window covers."""
    first = np.clip(np.round(starts / FRAME_SECONDS).astype(int), 0, frames)
    return np.stack([first, np.minimum(first + _frame(WINDOW_SECONDS), frames)], axis=1)


def _centroids(embeddings: np.ndarray, windows: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(speakers described, their centroids): the mean embedding of each speaker's pure windows, L2-normalised.

    A window is a speaker's when at least PURITY of its length is that speaker
    alone: overlaps, other speakers and silence all count against it.
    """
    # per window, frames of single speech by each speaker, from prefix sums over the frames
    one_hot = np.zeros((labels.size + 1, count + 1), dtype=np.int32)
    one_hot[np.arange(1, labels.size + 1), np.where(labels >= 0, labels, count)] = 1
    prefix = one_hot.cumsum(axis=0)
    counts = prefix[windows[:, 1]] - prefix[windows[:, 0]]
    length = windows[:, 1] - windows[:, 0]
    described, centroids = [], []
    for k in range(count):
        pure = (length > 0) & (counts[:, k] >= PURITY * length)
        if pure.any():
            mean = embeddings[pure].mean(axis=0)
            described.append(k)
            centroids.append(mean / max(np.linalg.norm(mean), 1e-9))
    return np.asarray(described, dtype=int), np.stack(centroids) if centroids else np.zeros((0, embeddings.shape[1]))


def _covering(windows: np.ndarray, frames: int) -> np.ndarray:
    """How many windows cover each frame (a difference array)."""
    covering = np.zeros(frames + 1)
    np.add.at(covering, windows[:, 0], 1)
    np.subtract.at(covering, windows[:, 1], 1)
    return covering.cumsum()[:frames]


def _frame_scores(window_scores: np.ndarray, windows: np.ndarray, covering: np.ndarray) -> np.ndarray:
    """(frames, speakers): each frame's mean score over the windows covering it (a difference array)."""
    frames = covering.size
    total = np.zeros((frames + 1, window_scores.shape[1]))
    np.add.at(total, windows[:, 0], window_scores)
    np.subtract.at(total, windows[:, 1], window_scores)
    return total.cumsum(axis=0)[:frames] / np.maximum(covering, 1)[:, None]


def _smooth(scores: np.ndarray) -> np.ndarray:
    width = max(1, _frame(SMOOTHING_SECONDS))
    if width == 1:
        return scores
    kernel = np.ones(width) / width
    return np.stack([np.convolve(column, kernel, mode="same") for column in scores.T], axis=1)


def _turns(turns: Sequence[Turn], labels: np.ndarray, speakers: list[str], overlapped: np.ndarray) -> list[Turn]:
    """The original turns cropped to the overlapped stretches, plus runs of the new single-speaker labels."""
    result = []
    runs = _runs_of(overlapped)
    run_ends = [last * FRAME_SECONDS for _, last in runs]
    for turn in turns:  # each turn meets the overlaps from the first one ending after its start
        for first, last in runs[bisect.bisect_right(run_ends, turn.start) :]:
            if first * FRAME_SECONDS >= turn.end:
                break
            start, end = max(turn.start, first * FRAME_SECONDS), min(turn.end, last * FRAME_SECONDS)
            result.append(Turn(round(float(start), 3), round(float(end), 3), turn.speaker))
    for first, last in _runs_of(labels >= 0):
        run = labels[first:last]
        edges = np.flatnonzero(np.diff(run)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, run.size]):
            result.append(Turn(round(float(first + a) * FRAME_SECONDS, 3), round(float(first + b) * FRAME_SECONDS, 3), speakers[run[a]]))
    return _merged(result)


def _merged(turns: list[Turn]) -> list[Turn]:
    """One turn where a speaker's pieces touch or overlap (cropping at overlap edges cut them)."""
    merged: list[Turn] = []
    last_of: dict[str, int] = {}  # speaker -> index of their latest turn in merged
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        index = last_of.get(turn.speaker)
        if index is not None and turn.start <= merged[index].end:
            merged[index] = Turn(merged[index].start, max(merged[index].end, turn.end), turn.speaker)
        else:
            last_of[turn.speaker] = len(merged)
            merged.append(turn)
    return merged


def _runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """[first, last) frame ranges where mask is true."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
