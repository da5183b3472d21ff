"""Speakers on the transcript (transcription.speakers), on its own: exact cases, then properties against brute force."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from transcription.speakers import SpeakerTimeline, Turn, exclusive, first_appearance_labels, split_by_speaker


def test_overlap_goes_to_the_shorter_turn_and_turns_become_disjoint():
    turns = [Turn(0, 10, "A"), Turn(4, 5, "B"), Turn(9, 12, "C")]
    assert exclusive(turns) == [Turn(0, 4, "A"), Turn(4, 5, "B"), Turn(5, 9, "A"), Turn(9, 12, "C")]


def test_adjacent_pieces_of_one_speaker_are_joined_and_empty_turns_dropped():
    assert exclusive([Turn(0, 2, "A"), Turn(2, 3, "A"), Turn(5, 5, "B")]) == [Turn(0, 3, "A")]


def test_speaker_who_talks_most_during_the_interval_wins():
    timeline = SpeakerTimeline([Turn(0, 3, "A"), Turn(3, 10, "B")])
    assert timeline.speaker_for(1, 4) == "A"  # 2 s of A, 1 s of B
    assert timeline.speaker_for(2, 6) == "B"
    assert timeline.speaker_for(3, 3) == "B"  # a zero-length word on a boundary belongs to the turn it starts


def test_words_in_no_turn_take_the_nearest_turn():
    timeline = SpeakerTimeline([Turn(0, 2, "A"), Turn(10, 12, "B")])
    assert timeline.speaker_for(3, 4) == "A"
    assert timeline.speaker_for(8, 9) == "B"
    assert timeline.speaker_for(50, 51) == "B"
    assert timeline.speaker_for(-3, -2) == "A"
    assert SpeakerTimeline([]).speaker_for(0, 1) is None


def test_segments_split_where_the_speaker_changes():
    assert split_by_speaker(["A", "A", "B", "B", "A"]) == [(0, 2), (2, 4), (4, 5)]
    assert split_by_speaker(["A"]) == [(0, 1)]
    assert split_by_speaker([]) == []


def test_labels_follow_first_appearance():
    turns = first_appearance_labels([Turn(5, 6, "x"), Turn(1, 2, "y"), Turn(3, 4, "x")])
    assert turns == [Turn(1, 2, "SPEAKER_00"), Turn(3, 4, "SPEAKER_01"), Turn(5, 6, "SPEAKER_01")]


# -- properties against a brute-force reference --------------------------------------

times = st.integers(min_value=0, max_value=400).map(lambda x: x / 4)  # quarter seconds keep float sums exact
turn_lists = st.lists(st.tuples(times, times, st.sampled_from("ABCD")), max_size=25).map(
    lambda raw: [Turn(min(a, b), max(a, b), s) for a, b, s in raw if a != b]
)


def owner_at(turns: list[Turn], t: float) -> str | None:
    """Brute force: the shortest turn covering instant t (the exclusive rule)."""
    covering = [turn for turn in sorted(turns, key=lambda x: (x.start, x.end)) if turn.start <= t < turn.end]
    return min(covering, key=lambda x: (x.end - x.start, x.start)).speaker if covering else None


@settings(max_examples=300, deadline=None)
@given(turn_lists)
def test_exclusive_turns_are_disjoint_and_agree_with_brute_force(turns):
    result = exclusive(turns)
    assert all(a.end <= b.start for a, b in zip(result, result[1:]))
    for instant in {t.start + 0.125 for t in turns} | {t.end - 0.125 for t in turns}:
        found = [r.speaker for r in result if r.start <= instant < r.end]
        assert found == ([owner_at(turns, instant)] if owner_at(turns, instant) else [])


@settings(max_examples=300, deadline=None)
@given(turn_lists, times, times)
def test_speaker_for_matches_a_quadratic_reference(turns, a, b):
    start, end = min(a, b), max(a, b)
    timeline = SpeakerTimeline(turns)
    got = timeline.speaker_for(start, end)
    if not timeline.turns:
        assert got is None
        return
    overlap: dict[str, float] = {}
    for turn in timeline.turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        best = max(overlap.values())
        assert overlap.get(got) == best
    else:
        distance = min(max(t.start - end, start - t.end, 0.0) for t in timeline.turns)
        assert got in {t.speaker for t in timeline.turns if max(t.start - end, start - t.end, 0.0) == distance}
