"""Properties over arbitrary input (hypothesis): the subtitle writers, URL normalisation, speaker assignment.

Each complements the example-based tests next to its module (tests/test_exports.py, test_downloader_urls.py,
test_speakers.py) with what must hold for any input: subtitles that real parsers (srt, webvtt-py) read back
cue for cue, a normalised URL that still goes where the pasted one would, and speakers that lose no word.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import srt
import webvtt
import yarl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transcription.downloader.netguard import AddressPolicy
from transcription.downloader.urls import normalise, youtube_video_id
from transcription.errors import InvalidArgument
from transcription.gateway.exports import BIDI_MARKS, Transcript, render
from transcription.speakers import SpeakerTimeline, Turn, exclusive, first_appearance_labels, split_by_speaker

# -- subtitle writers ----------------------------------------------------------------------------

TRICKY_TEXTS = [
    "-->", " a --> b ", "00:00:01,000 --> 00:00:02,000", "1", "", "  ", "\n", "line\nbreak", "\r\n\r\nblank lines\r\n",
    "שלום, יש לנו 3 אנשים.", "مرحبا بالعالم", "\u202eoverride", "\u2028\u2029", "<b>bold</b> & <i>", "&amp;", "WEBVTT",
    "NOTE not a note", "\u200f\u200e\u2068\u2069", "\t tab", "\x00nul", "\x85next line",
]  # fmt: skip
texts = st.one_of(
    st.sampled_from(TRICKY_TEXTS),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),  # any character a JSON string can carry
    st.lists(st.sampled_from(TRICKY_TEXTS) | st.text(max_size=4), max_size=4).map("".join),
)
speakers = st.none() | st.sampled_from(["SPEAKER_00", "SPEAKER_01", "דובר א", "A&B", "<v x>", "a\nb", " ", ""]) | texts
times = st.floats(min_value=-100, max_value=1e7, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 0.0005, 3599.9995, 3599.9996, 359_999.9999]
)
segment_lists = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 10**6), "start": times, "end": times, "text": texts, "speaker": speakers}), max_size=10
)


def comparable(text: str) -> str:
    """Text as the writers promise to keep it: bidi marks (added for layout) dropped, white space collapsed."""
    return " ".join("".join(char for char in text if char not in BIDI_MARKS).split())


def spoken(segments: list[dict]) -> list[dict]:
    """The segments that become cues: those with some text (documented: the rest are not cues)."""
    return [segment for segment in segments if segment["text"].strip()]


def expected_cue(segment: dict) -> str:
    speaker = segment["speaker"]
    return comparable(f"{speaker.strip()}: {segment['text']}" if speaker and speaker.strip() else segment["text"])


def expected_ms(segment: dict) -> tuple[int, int]:
    """Start and end, rounded to the millisecond, clamped at zero, never ending before the start (documented)."""
    start = max(round(segment["start"] * 1000), 0)
    return start, max(round(max(segment["end"], segment["start"]) * 1000), 0)


def ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def vtt_ms(clock: str) -> int:
    hours, minutes, seconds = clock.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


@settings(max_examples=300, deadline=None)
@given(segment_lists)
@example([{"id": 0, "start": 1.0, "end": 2.0, "text": "00:00:01,000 --> 00:00:02,000", "speaker": None}])
def test_srt_parses_back_cue_for_cue(segments):
    body, _ = render("srt", Transcript(segments))
    cues = list(srt.parse(body))
    assert len(cues) == len(spoken(segments)), body
    for number, (cue, segment) in enumerate(zip(cues, spoken(segments)), start=1):
        assert cue.index == number
        assert (ms(cue.start), ms(cue.end)) == expected_ms(segment)
        assert comparable(cue.content) == expected_cue(segment), body


@settings(max_examples=300, deadline=None)
@given(segment_lists)
def test_vtt_parses_back_cue_for_cue(segments):
    body, _ = render("vtt", Transcript(segments))
    captions = webvtt.from_string(body).captions
    assert len(captions) == len(spoken(segments)), body
    for caption, segment in zip(captions, spoken(segments)):
        assert (vtt_ms(caption.start), vtt_ms(caption.end)) == expected_ms(segment)
        assert comparable(html.unescape(caption.text)) == comparable(segment["text"]), body
        speaker = segment["speaker"]
        expected_voice = comparable(speaker) if speaker and speaker.strip() else None
        assert (comparable(html.unescape(caption.voice)) if caption.voice else None) == expected_voice, body


@settings(max_examples=100, deadline=None)
@given(segment_lists)
def test_cues_of_segments_in_time_order_are_in_time_order(segments):
    in_order = sorted(segments, key=lambda segment: segment["start"])
    for fmt, parse in (
        ("srt", lambda b: [ms(c.start) for c in srt.parse(b)]),
        ("vtt", lambda b: [vtt_ms(c.start) for c in webvtt.from_string(b).captions]),
    ):
        starts = parse(render(fmt, Transcript(in_order))[0])
        assert starts == sorted(starts) and all(start >= 0 for start in starts), fmt


# -- URL normalisation ------------------------------------------------------------------------------

schemes = st.sampled_from(["http", "https", "HTTP", "HtTpS", "ftp", "file", "gopher", "javascript", "data", "ws"])
hosts = st.sampled_from(
    [
        "example.test", "EXAMPLE.test", "127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]",
        "2130706433", "0x7f.0.0.1", "localhost", "media.test.", "youtube.com", "www.youtube.com", "youtu.be",
        "xn--bcher-kva.test", "", "a b.test",
    ]
)  # fmt: skip
pieces = st.sampled_from(["/", "/a.mp3", "@", ":", "?", "#", "&", "=", "\\", "..", "%40", "%2F", "v=dQw4w9WgXcQ", " ", "\t"])
urls = st.builds(
    lambda scheme, userinfo, host, port, rest: f"{scheme}://{userinfo}{host}{port}{''.join(rest)}",
    schemes,
    st.sampled_from(["", "user@", "user:pw@", "evil.test@", "a@b@"]),
    hosts,
    st.sampled_from(["", ":80", ":443", ":8080", ":", ":0x50"]),
    st.lists(pieces, max_size=6),
)


def connects_to(url: str) -> str | None:
    """The host aiohttp would connect to (lower case: host names are); None for a URL it refuses or one without a host
    (the downloader refuses both)."""
    try:
        return (yarl.URL(url).host or "").lower() or None
    except (ValueError, IndexError):  # IndexError: yarl on "http://[::1]@"
        return None


def youtube(url: str) -> bool:
    return normalise(url).startswith(("https://www.youtube.com/watch?v=", "https://www.youtube.com/playlist?list="))


def rewritten_as_is(url: str) -> bool:
    """Whether normalising must leave the URL's host alone: not a YouTube link (those are rewritten on purpose), and
    a host without white space in it (which names nothing: normalising may trim it along with the URL's ends)."""
    return not youtube(url) and not any(char.isspace() for char in connects_to(url.strip()) or "")


@settings(max_examples=500, deadline=None)
@given(urls)
def test_normalising_keeps_the_scheme(url):
    if not youtube(url):
        assert urlsplit(normalise(url)).scheme == urlsplit(url).scheme.lower()
    else:  # a YouTube link: only YouTube's own hosts, over http or https, become the canonical form
        assert urlsplit(url).scheme.lower() in ("http", "https")
        assert youtube_video_id(url) is not None or "playlist" in url


@settings(max_examples=500, deadline=None)
@given(urls)
def test_normalising_keeps_the_host_the_client_would_connect_to(url):
    """The downloader checks the normalised URL's host (yarl's reading, as aiohttp connects): it must be the pasted one's
    (pasted: white space around it dropped, as documented)."""
    if not rewritten_as_is(url) or urlsplit(url).scheme.lower() not in ("http", "https"):
        return
    assert connects_to(normalise(url)) == connects_to(url.strip()), normalise(url)


PUBLIC_ONLY = AddressPolicy([])  # the downloader's default: no private, loopback or link-local address


def verdict(url: str) -> str:
    """What the downloader's address policy makes of a URL: the host it lets through, or "refused"."""
    try:
        return PUBLIC_ONLY.check_url(url).lower()
    except InvalidArgument:
        return "refused"


@settings(max_examples=500, deadline=None)
@given(urls | st.text(max_size=40))
@example("http://[::1]@")  # yarl raises IndexError on this authority
def test_the_address_policy_judges_a_normalised_url_as_the_pasted_one(url):
    """The downloader checks the normalised URL: refused (a clear error, never a crash) exactly when the pasted one
    is, and what passes is http or https naming the host aiohttp connects to."""
    judged = verdict(normalise(url))
    if rewritten_as_is(url):
        assert judged == verdict(url.strip())
    if judged != "refused":
        assert urlsplit(normalise(url)).scheme in ("http", "https") and judged == connects_to(normalise(url))


@settings(max_examples=300, deadline=None)
@given(urls | st.text(max_size=40))
def test_normalised_urls_hold_no_white_space_at_the_ends_and_no_fragment(url):
    result = normalise(url)
    assert result == result.strip()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", result) and not youtube(url):
        assert "#" not in result


# -- speaker assignment -----------------------------------------------------------------------

instants = st.floats(min_value=-50, max_value=500, allow_nan=False, allow_infinity=False)
turn_lists = st.lists(st.builds(Turn, instants, instants, st.sampled_from(["A", "B", "C", "D"])), max_size=15)


@settings(max_examples=300, deadline=None)
@given(turn_lists, st.lists(st.tuples(instants, instants), max_size=20))
def test_every_word_gets_a_speaker_of_the_turns(turns, words):
    """Any word, even reversed or outside every turn, gets one of the speakers of the turns with some length."""
    timeline = SpeakerTimeline(turns)
    real = {turn.speaker for turn in turns if turn.end > turn.start}
    for start, end in words:
        speaker = timeline.speaker_for(start, end)
        assert speaker in real if real else speaker is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["A", "B", "C", None]), max_size=30))
def test_splitting_by_speaker_loses_and_duplicates_no_word(speakers):
    ranges = split_by_speaker(speakers)
    assert [i for first, last in ranges for i in range(first, last)] == list(range(len(speakers)))  # each word once, in order
    assert all(last > first for first, last in ranges)
    assert all(len({speakers[i] for i in range(first, last)}) == 1 for first, last in ranges)
    assert all(speakers[a_last - 1] != speakers[b_first] for (_, a_last), (b_first, _) in zip(ranges, ranges[1:]))  # maximal


@settings(max_examples=300, deadline=None)
@given(turn_lists)
def test_labels_follow_first_appearance(turns):
    labelled = first_appearance_labels(turns)
    assert [(t.start, t.end) for t in labelled] == sorted((t.start, t.end) for t in turns)
    firsts = list(dict.fromkeys(turn.speaker for turn in labelled))
    assert firsts == [f"SPEAKER_{n:02d}" for n in range(len(firsts))]
    # one label per speaker and one speaker per label
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    pairs = {(original.speaker, new.speaker) for original, new in zip(ordered, labelled)}
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def covered(turns) -> float:
    """The length of the union of the turns' intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((t.start, t.end) for t in turns if t.end > t.start):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@settings(max_examples=300, deadline=None)
@given(turn_lists)
def test_exclusive_turns_cover_exactly_what_the_turns_cover(turns):
    result = exclusive(turns)
    assert abs(sum(t.end - t.start for t in result) - covered(turns)) <= 1e-6 * max(1.0, covered(turns))
    assert {t.speaker for t in result} <= {t.speaker for t in turns}
    assert all(a.end <= b.start for a, b in zip(result, result[1:]))
    assert not [(a, b) for a, b in zip(result, result[1:]) if a.speaker == b.speaker and a.end == b.start], "pieces are joined"
