"""Speakers on the transcript: which speaker said each word, and each segment.

Diarization gives speaker turns, the ASR gives segments (and, with word
timestamps, words). This module joins them:

* `exclusive` turns one speaker at a time: where turns overlap, the shorter
  turn (the interjection: "yes", "right") holds the overlapped stretch, so a
  word is never claimed by two speakers;
* `SpeakerTimeline` answers "who talks most during [start, end]?" in
  O(log turns + turns it touches), by bisection over the exclusive turns, so
  labelling W words against T turns costs O((W + T) log T) instead of W x T;
* a word or segment in no turn takes the nearest turn's speaker (every word
  gets one once any turn exists);
* `split_by_speaker` cuts a segment where its words change speaker, at the
  word boundary;
* `first_appearance_labels` renames speakers SPEAKER_00, SPEAKER_01, ... in the
  order they first speak.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Speaker counts a request may ask for: far above any real meeting, and inside the proto's uint32.
MAX_SPEAKERS = 100


class Timed(Protocol):
    start: float
    end: float


class TurnLike(Timed, Protocol):
    speaker: str


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def exclusive(turns: Iterable[TurnLike]) -> list[Turn]:
    """Disjoint, sorted turns: each stretch of overlap goes to the shortest turn covering it.

    A sweep over the turn boundaries: O(T log T) for T turns (overlaps in
    speech are between a handful of turns at a time).
    """
    ordered = sorted((Turn(t.start, t.end, t.speaker) for t in turns if t.end > t.start), key=lambda t: (t.start, t.end))
    bounds = sorted({x for t in ordered for x in (t.start, t.end)})
    result: list[Turn] = []
    active: list[Turn] = []
    next_turn = 0
    for left, right in zip(bounds, bounds[1:]):
        while next_turn < len(ordered) and ordered[next_turn].start <= left:
            active.append(ordered[next_turn])
            next_turn += 1
        active = [t for t in active if t.end > left]
        if not active:
            continue
        owner = min(active, key=lambda t: (t.end - t.start, t.start)).speaker
        if result and result[-1].speaker == owner and result[-1].end == left:
            result[-1] = Turn(result[-1].start, right, owner)  # same speaker goes on
        else:
            result.append(Turn(left, right, owner))
    return result


class SpeakerTimeline:
    """Who speaks when, from exclusive turns, for fast interval queries."""

    def __init__(self, turns: Iterable[TurnLike]):
        self.turns = exclusive(turns)
        self._starts = [t.start for t in self.turns]
        self._ends = [t.end for t in self.turns]

    def __bool__(self) -> bool:
        return bool(self.turns)

    def speaker_for(self, start: float, end: float) -> str | None:
        """The speaker who talks most inside [start, end]; the nearest turn's when none does."""
        if not self.turns:
            return None
        overlap: dict[str, float] = {}
        index = bisect.bisect_right(self._ends, start)  # the first turn ending after start
        while index < len(self.turns) and self._starts[index] < end:
            turn = self.turns[index]
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
            index += 1
        if overlap:
            return max(overlap, key=overlap.__getitem__)  # ties: the one heard first
        return self._nearest(start, end).speaker

    def _nearest(self, start: float, end: float) -> Turn:
        after = bisect.bisect_left(self._starts, end)  # the first turn starting at or after end
        candidates = [self.turns[i] for i in (after - 1, after) if 0 <= i < len(self.turns)]
        # nearest first; at equal distance, the turn the interval starts in, then the earlier one
        return min(candidates, key=lambda t: (max(t.start - end, start - t.end, 0.0), not t.start <= start < t.end, t.start))


def split_by_speaker(speakers: Sequence[str | None]) -> list[tuple[int, int]]:
    """[first, last) word index ranges in which the speaker stays the same."""
    ranges: list[tuple[int, int]] = []
    first = 0
    for index in range(1, len(speakers) + 1):
        if index == len(speakers) or speakers[index] != speakers[first]:
            ranges.append((first, index))
            first = index
    return ranges


def first_appearance_labels(turns: Iterable[TurnLike], prefix: str = "SPEAKER_") -> list[Turn]:
    """Turns sorted by time, speakers renamed ``SPEAKER_00``, ``SPEAKER_01``, ... by first appearance."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    names: dict[str, str] = {}
    for turn in ordered:
        names.setdefault(turn.speaker, f"{prefix}{len(names):02d}")
    return [Turn(t.start, t.end, names[t.speaker]) for t in ordered]
