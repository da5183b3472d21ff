"""Transcript exports and OpenAI-compatible responses, parsed back by real readers (srt, webvtt-py, csv, json)."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
from datetime import timedelta

import pytest
import srt
import webvtt

from transcription.gateway.exports import (
    BIDI_MARKS,
    EXPORT_FORMATS,
    FSI,
    LANGUAGE_NAMES,
    LRM,
    PDI,
    RLM,
    Transcript,
    is_rtl,
    language_name,
    openai_response,
    render,
)

HEBREW_GREETING = "שלום, יש לנו 3 אנשים."  # ends with a neutral: the period lands on the wrong side without a mark


def words(*spec: tuple[str, float, float]) -> list[dict]:
    return [{"word": word, "start": start, "end": end, "probability": 0.9} for word, start, end in spec]


def english_segments() -> list[dict]:
    """Three segments as the gateway sends them: Whisper's leading spaces, a split id, a second speaker."""
    return [
        {
            "id": 0,
            "start": 0.0,
            "end": 1.25,
            "text": " Hello world.",
            "speaker": "SPEAKER_00",
            "words": words((" Hello", 0.0, 0.5), (" world.", 0.5, 1.25)),
        },
        {"id": 1, "start": 1.25, "end": 2.5, "text": " How are you?", "speaker": "SPEAKER_00", "words": words((" How", 1.25, 1.5))},
        {"id": "1.1", "start": 2.5, "end": 3725.5, "text": " Fine & <well>", "speaker": "SPEAKER_01", "split_from": 1},
    ]


def english() -> Transcript:
    return Transcript(english_segments(), language="en", duration=3725.5, title="Interview", num_speakers=2)


def hebrew(speaker: str | None = "SPEAKER_00") -> Transcript:
    return Transcript([{"id": 0, "start": 0.0, "end": 2.0, "text": " " + HEBREW_GREETING, "speaker": speaker}], language="he", duration=2.0)


def ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def without_marks(text: str) -> str:
    return "".join(char for char in text if char not in BIDI_MARKS)


# --- SRT ---------------------------------------------------------------------


def test_srt_parses_back_with_numbers_times_speakers_and_trimmed_text():
    body, media_type = render("srt", english())
    assert media_type == "application/x-subrip; charset=utf-8"
    cues = list(srt.parse(body))
    assert [cue.index for cue in cues] == [1, 2, 3]
    assert [(ms(cue.start), ms(cue.end)) for cue in cues] == [(0, 1250), (1250, 2500), (2500, 3725500)]
    assert [cue.content for cue in cues] == ["SPEAKER_00: Hello world.", "SPEAKER_00: How are you?", "SPEAKER_01: Fine & <well>"]


def test_srt_layout_is_numbered_blocks_separated_by_a_blank_line():
    body, _ = render("srt", english())
    assert body.startswith("1\n00:00:00,000 --> 00:00:01,250\nSPEAKER_00: Hello world.\n\n2\n00:00:01,250 --> 00:00:02,500\n")


def test_srt_hours_and_millisecond_carry():
    segments = [
        {"id": 0, "start": 3725.5, "end": 3725.75, "text": "late", "speaker": None},
        {"id": 1, "start": 3599.9996, "end": 36000.001, "text": "carry", "speaker": None},
    ]
    body, _ = render("srt", Transcript(segments))
    assert "01:02:05,500 --> 01:02:05,750\nlate\n" in body
    assert "01:00:00,000 --> 10:00:00,001\ncarry\n" in body  # not 00:59:59,1000


def test_a_cue_never_ends_before_it_starts():
    segments = [{"id": 0, "start": 5.0, "end": 4.9, "text": "backwards", "speaker": None}]
    cue = list(srt.parse(render("srt", Transcript(segments))[0]))[0]
    assert (ms(cue.start), ms(cue.end)) == (5000, 5000)
    assert webvtt.from_string(render("vtt", Transcript(segments))[0]).captions[0].end == "00:00:05.000"


def test_srt_without_speakers_has_no_label_and_a_multiline_text_stays_one_cue():
    segments = [{"id": 0, "start": 1.0, "end": 2.0, "text": " first line\n\nsecond line", "speaker": None}]
    cues = list(srt.parse(render("srt", Transcript(segments))[0]))
    assert [cue.content for cue in cues] == ["first line second line"]


def test_srt_skips_segments_without_text_and_keeps_numbering_dense():
    segments = [*english_segments()[:1], {"id": 9, "start": 1.3, "end": 1.4, "text": "  ", "speaker": None}, english_segments()[1]]
    cues = list(srt.parse(render("srt", Transcript(segments))[0]))
    assert [cue.index for cue in cues] == [1, 2]
    assert cues[1].content == "SPEAKER_00: How are you?"


# --- WebVTT ------------------------------------------------------------------


def test_vtt_parses_back_with_times_voices_and_text():
    body, media_type = render("vtt", english())
    assert media_type == "text/vtt; charset=utf-8"
    assert body.startswith("WEBVTT\n\n")
    captions = webvtt.from_string(body).captions
    assert [(caption.start, caption.end) for caption in captions] == [
        ("00:00:00.000", "00:00:01.250"),
        ("00:00:01.250", "00:00:02.500"),
        ("00:00:02.500", "01:02:05.500"),
    ]
    assert [caption.voice for caption in captions] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]
    assert [html.unescape(caption.text) for caption in captions] == ["Hello world.", "How are you?", "Fine & <well>"]
    assert captions[0].raw_text == "<v SPEAKER_00>Hello world.</v>"


def test_vtt_escapes_markup_characters_in_text_and_voice():
    segments = [{"id": 0, "start": 0.0, "end": 1.0, "text": " a <b> & c --> d", "speaker": "A&B"}]
    caption = webvtt.from_string(render("vtt", Transcript(segments))[0]).captions[0]
    assert caption.raw_text == "<v A&amp;B>a &lt;b&gt; &amp; c --&gt; d</v>"
    assert html.unescape(caption.text) == "a <b> & c --> d"
    assert html.unescape(caption.voice) == "A&B"


def test_vtt_without_speaker_has_no_voice_tag():
    segments = [{"id": 0, "start": 0.0, "end": 1.0, "text": " plain", "speaker": None}]
    caption = webvtt.from_string(render("vtt", Transcript(segments))[0]).captions[0]
    assert caption.voice is None
    assert caption.raw_text == "plain"


# --- txt, JSON, TSV ----------------------------------------------------------


def test_txt_is_one_paragraph_per_speaker_turn():
    segments = [*english_segments(), {"id": 3, "start": 3726.0, "end": 3727.0, "text": " Back to me.", "speaker": "SPEAKER_00"}]
    body, media_type = render("txt", Transcript(segments, language="en"))
    assert media_type == "text/plain; charset=utf-8"
    assert body == "SPEAKER_00: Hello world. How are you?\n\nSPEAKER_01: Fine & <well>\n\nSPEAKER_00: Back to me.\n"


def test_txt_without_speakers_is_one_segment_per_line():
    segments = [{**segment, "speaker": None} for segment in english_segments()]
    assert render("txt", Transcript(segments))[0] == "Hello world.\nHow are you?\nFine & <well>\n"


def test_json_carries_the_transcript_and_its_segments_as_given():
    transcript = Transcript([*english_segments(), *hebrew().segments], language="en", duration=3725.5, title="Interview", num_speakers=2)
    before = copy.deepcopy(transcript.segments)
    body, media_type = render("json", transcript)
    assert media_type == "application/json; charset=utf-8"
    assert HEBREW_GREETING in body  # ensure_ascii=False: readable, not \u05e9 escapes
    assert json.loads(body) == {
        "language": "en",
        "duration": 3725.5,
        "title": "Interview",
        "num_speakers": 2,
        "text": "Hello world. How are you? Fine & <well> " + HEBREW_GREETING,  # no bidi marks in data
        "segments": before,
    }


def test_tsv_parses_with_csv_in_milliseconds_with_breaks_flattened():
    segments = [*english_segments(), {"id": 3, "start": 4000.0004, "end": 4001.0, "text": ' tab\there\nnew "quoted"', "speaker": None}]
    body, media_type = render("tsv", Transcript(segments))
    assert media_type == "text/tab-separated-values; charset=utf-8"
    rows = list(csv.reader(io.StringIO(body), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows == [
        ["start", "end", "speaker", "text"],
        ["0", "1250", "SPEAKER_00", "Hello world."],
        ["1250", "2500", "SPEAKER_00", "How are you?"],
        ["2500", "3725500", "SPEAKER_01", "Fine & <well>"],
        ["4000000", "4001000", "", 'tab here new "quoted"'],
    ]


# --- right to left -----------------------------------------------------------


def test_is_rtl_follows_the_first_strong_character():
    assert is_rtl(HEBREW_GREETING)
    assert is_rtl("3 אנשים")  # digits are neutral
    assert is_rtl("مرحبا")  # Arabic letters are AL
    assert not is_rtl("Hello שלום")
    assert not is_rtl("123 ...")
    assert is_rtl(f"{FSI}SPEAKER_00{PDI}: שלום")  # what is inside an isolate does not count


def test_hebrew_srt_cue_gets_rlm_and_an_isolated_label():
    content = list(srt.parse(render("srt", hebrew())[0]))[0].content
    assert content == f"{RLM}{FSI}SPEAKER_00{PDI}: {HEBREW_GREETING}"
    assert without_marks(content) == f"SPEAKER_00: {HEBREW_GREETING}"


def test_hebrew_cue_without_speaker_gets_only_rlm():
    content = list(srt.parse(render("srt", hebrew(speaker=None))[0]))[0].content
    assert content == RLM + HEBREW_GREETING


def test_english_cues_get_no_marks_in_any_format():
    for fmt in EXPORT_FORMATS:
        body, _ = render(fmt, english())
        assert not any(mark in body for mark in BIDI_MARKS), fmt


def test_english_text_under_a_hebrew_label_is_kept_left_to_right():
    segments = [{"id": 0, "start": 0.0, "end": 1.0, "text": " Hello.", "speaker": "דני"}]
    content = list(srt.parse(render("srt", Transcript(segments))[0]))[0].content
    assert content == f"{LRM}{FSI}דני{PDI}: Hello."


def test_hebrew_vtt_cue_text_starts_with_rlm_inside_the_voice_tag():
    caption = webvtt.from_string(render("vtt", hebrew())[0]).captions[0]
    assert caption.voice == "SPEAKER_00"  # the tag still opens the line
    assert caption.raw_text == f"<v SPEAKER_00>{RLM}{HEBREW_GREETING}</v>"
    assert without_marks(caption.text) == HEBREW_GREETING


def test_hebrew_txt_paragraph_gets_rlm_and_an_isolated_label():
    body, _ = render("txt", hebrew())
    assert body == f"{RLM}{FSI}SPEAKER_00{PDI}: {HEBREW_GREETING}\n"
    assert render("txt", hebrew(speaker=None))[0] == f"{RLM}{HEBREW_GREETING}\n"


def test_json_and_tsv_stay_plain_data_for_hebrew():
    for fmt in ("json", "tsv"):
        body, _ = render(fmt, hebrew())
        assert HEBREW_GREETING in body, fmt
        assert not any(mark in body for mark in BIDI_MARKS), fmt


# --- the whole text, formats, empty transcripts ------------------------------


def test_text_joins_trimmed_segments_with_spaces_except_for_unspaced_languages():
    assert english().text == "Hello world. How are you? Fine & <well>"
    chinese = [{"id": 0, "start": 0.0, "end": 1.0, "text": "你好。"}, {"id": 1, "start": 1.0, "end": 2.0, "text": "谢谢。"}]
    assert Transcript(chinese, language="zh").text == "你好。谢谢。"


def test_export_formats_name_their_media_types_and_extensions():
    assert {name: (f.media_type, f.extension) for name, f in EXPORT_FORMATS.items()} == {
        "srt": ("application/x-subrip", "srt"),
        "vtt": ("text/vtt", "vtt"),
        "txt": ("text/plain", "txt"),
        "json": ("application/json", "json"),
        "tsv": ("text/tab-separated-values", "tsv"),
    }


def test_unknown_export_format_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown export format 'docx'") as raised:
        render("docx", english())
    for name in EXPORT_FORMATS:
        assert name in str(raised.value)


def test_empty_transcript_gives_valid_empty_files():
    empty = Transcript([], language="he")
    assert render("srt", empty)[0] == ""
    assert list(srt.parse(render("srt", empty)[0])) == []
    assert render("vtt", empty)[0] == "WEBVTT\n"
    assert webvtt.from_string(render("vtt", empty)[0]).captions == []
    assert render("txt", empty)[0] == ""
    assert json.loads(render("json", empty)[0]) == {
        "language": "he",
        "duration": 0.0,
        "title": "",
        "num_speakers": None,
        "text": "",
        "segments": [],
    }
    assert render("tsv", empty)[0] == "start\tend\tspeaker\ttext\n"


# --- OpenAI ------------------------------------------------------------------


def test_openai_json_text_srt_and_vtt():
    transcript = english()
    assert openai_response("json", transcript) == ({"text": "Hello world. How are you? Fine & <well>"}, "application/json")
    assert openai_response("text", transcript) == ("Hello world. How are you? Fine & <well>", "text/plain; charset=utf-8")
    assert openai_response("srt", transcript) == render("srt", transcript)
    assert openai_response("vtt", transcript) == render("vtt", transcript)


def test_openai_verbose_json_segments_by_default():
    body, media_type = openai_response("verbose_json", english(), timestamp_granularities=[], task="translate")
    assert media_type == "application/json"
    assert set(body) == {"task", "language", "duration", "text", "segments"}
    assert (body["task"], body["language"], body["duration"]) == ("translate", "english", 3725.5)
    assert body["text"] == "Hello world. How are you? Fine & <well>"
    assert [segment["id"] for segment in body["segments"]] == [0, 1, 2]  # positions, not the gateway's "1.1"
    assert body["segments"][2] == {
        "id": 2,
        "seek": 0,
        "start": 2.5,
        "end": 3725.5,
        "text": " Fine & <well>",
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
    }
    assert json.loads(json.dumps(body)) == body  # JSON-encodable as it is


@pytest.mark.parametrize(
    ("granularities", "has_segments", "has_words"),
    [(["segment"], True, False), (["word"], False, True), (["word", "segment"], True, True), ([], True, False)],
)
def test_openai_verbose_json_granularities(granularities: list[str], has_segments: bool, has_words: bool):
    body, _ = openai_response("verbose_json", english(), timestamp_granularities=granularities)
    assert ("segments" in body) == has_segments
    assert ("words" in body) == has_words
    if has_words:
        assert body["words"] == [
            {"word": "Hello", "start": 0.0, "end": 0.5},
            {"word": "world.", "start": 0.5, "end": 1.25},
            {"word": "How", "start": 1.25, "end": 1.5},
        ]


def test_openai_language_names():
    assert language_name("he") == "hebrew"
    assert language_name("EN") == "english"
    assert language_name("haw") == "hawaiian"
    assert language_name("xx") == "xx"
    assert len(LANGUAGE_NAMES) == 100  # Whisper's 99, and Cantonese from large-v3
    body, _ = openai_response("verbose_json", hebrew())
    assert body["language"] == "hebrew"
    body, _ = openai_response("verbose_json", Transcript([], language="xx"))
    assert body["language"] == "xx"


def test_openai_unknown_format_and_granularity_are_rejected():
    with pytest.raises(ValueError, match="unknown response_format 'docx'") as raised:
        openai_response("docx", english())
    for name in ("json", "text", "srt", "verbose_json", "vtt"):
        assert name in str(raised.value)
    with pytest.raises(ValueError, match="timestamp_granularities"):
        openai_response("verbose_json", english(), timestamp_granularities=["sentence"])
