"""Speaker assignment on a synthetic hour: 10,000 words against 2,000 turns.

`transcription.speakers.SpeakerTimeline` (bisection over exclusive turns)
against the straightforward nested loop (every word against every turn, the
shape that took 63 % of a peer's pipeline), same inputs, same answers checked.

    .venv/bin/python bench/assign.py      # make bench runs it too
"""

from __future__ import annotations

import random
import time

from transcription.speakers import SpeakerTimeline, Turn

HOUR = 3600.0


def synthetic_hour(words: int = 10_000, turns: int = 2_000, speakers: int = 4, seed: int = 7):
    rng = random.Random(seed)
    cuts = sorted(rng.uniform(0, HOUR) for _ in range(turns - 1))
    bounds = [0.0, *cuts, HOUR]
    speaker_turns = []
    for start, end in zip(bounds, bounds[1:]):
        overlap = rng.uniform(0, 0.4) if rng.random() < 0.2 else 0.0  # a fifth of the turns run into the next
        speaker_turns.append(Turn(start, min(HOUR, end + overlap), f"S{rng.randrange(speakers)}"))
    starts = sorted(rng.uniform(0, HOUR - 1) for _ in range(words))
    word_times = [(s, s + rng.uniform(0.1, 0.6)) for s in starts]
    return speaker_turns, word_times


def nested_loop(word_times, turns: list[Turn]) -> list[str]:
    labels = []
    for start, end in word_times:
        overlap: dict[str, float] = {}
        for turn in turns:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        labels.append(max(overlap, key=overlap.__getitem__) if overlap else None)
    return labels


def measure() -> list[tuple[str, float]]:
    turns, word_times = synthetic_hour()
    began = time.perf_counter()
    timeline = SpeakerTimeline(turns)
    fast = [timeline.speaker_for(s, e) for s, e in word_times]
    fast_seconds = time.perf_counter() - began

    exclusive_turns = timeline.turns  # the reference loops over the same one-speaker-at-a-time turns
    began = time.perf_counter()
    slow = nested_loop(word_times, exclusive_turns)
    slow_seconds = time.perf_counter() - began
    disagreements = sum(1 for a, b in zip(fast, slow) if b is not None and a != b)
    assert disagreements == 0, f"{disagreements} words labelled differently"
    return [("SpeakerTimeline (bisection)", fast_seconds), ("nested loop", slow_seconds)]


def markdown(rows: list[tuple[str, float]]) -> list[str]:
    fast = rows[0][1]
    lines = ["| method | time | × SpeakerTimeline |", "|---|---|---|"]
    lines += [f"| {name} | {seconds * 1000:.1f} ms | {seconds / fast:.0f} |" for name, seconds in rows]
    return lines


if __name__ == "__main__":
    print("\n".join(markdown(measure())))
