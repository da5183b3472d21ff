"""Attach speaker labels to transcript segments (who said this segment?)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class Timed(Protocol):
    start: float
    end: float


class Turn(Timed, Protocol):
    speaker: str


def speaker_for(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker who talks longest inside [start, end].

    A segment that overlaps no turn (the diarizer heard no speech there) takes
    the nearest turn's speaker, so every segment is labelled once turns exist.
    """
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=overlap.__getitem__)
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end)))
    return nearest.speaker


def assign_speakers(segments: Iterable[Timed], turns: Sequence[Turn]) -> list[str | None]:
    return [speaker_for(s.start, s.end, turns) for s in segments]
