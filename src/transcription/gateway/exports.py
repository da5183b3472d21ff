"""A finished transcript as a file (SRT, WebVTT, text, JSON, TSV) or as an OpenAI transcription response.

Pure functions over the segment dicts the gateway sends to browsers; stdlib only, so the gateway needs no numpy,
torch or whisper to serve them. Choices:

* One cue per segment (word timestamps are not used to re-cut cues). Times are rounded to the millisecond once, from
  the total, so 3599.9996 s is ``01:00:00,000``, not ``00:59:59,1000``; a cue never ends before it starts.
* Texts are trimmed (Whisper's leading space) and put on one line: a line break or blank line inside a cue would end
  it early in SRT and WebVTT, and split a TSV row. Segments left without text are not cues (SRT, WebVTT, txt); JSON
  and TSV keep them. Texts are joined with a space, except in the languages Whisper itself splits without spaces.
* Right to left. Subtitle players and editors take a line's direction from its first strong character, so a Hebrew
  line opening with a Latin label ("SPEAKER_00:") or a number is laid out left to right: the label on the wrong side,
  the final period at the start. The rule, for SRT cues, WebVTT cue text and txt lines: when the text is RTL
  (``is_rtl``: its first strong character is R or AL), the line starts with U+200F RIGHT-TO-LEFT MARK, and a speaker
  label is wrapped in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE, so it stays one unit in its own direction
  whatever digits or punctuation it holds. The colon is left outside the isolate on purpose: in an RTL line it then
  follows the label in reading order (on its left), as Hebrew and Arabic write "name: text". The mirror case, LTR
  text under an RTL label (a speaker renamed in Hebrew), gets U+200E LEFT-TO-RIGHT MARK and the isolate; LTR text
  with a Latin label gets no marks. WebVTT shows no label (the speaker is a ``<v>`` voice tag), so its mark goes
  right after the tag: still the cue text's first strong character, and the line still opens with ``<v`` as parsers
  expect. JSON and TSV are data: no marks.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

RLM, LRM = "\u200f", "\u200e"  # RIGHT-TO-LEFT MARK, LEFT-TO-RIGHT MARK
FSI, PDI = "\u2068", "\u2069"  # FIRST STRONG ISOLATE, POP DIRECTIONAL ISOLATE
BIDI_MARKS = (RLM, LRM, FSI, PDI)

# Whisper's tokenizer.LANGUAGES: code -> the lower-case English name OpenAI returns as "language".
# fmt: off
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean", "fr": "french",
    "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic",
    "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese", "he": "hebrew",
    "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian",
    "ta": "tamil", "no": "norwegian", "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician",
    "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali",
    "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht": "haitian creole",
    "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish",
    "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
# fmt: on
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})  # as whisper's split_to_word_tokens

_LINE_BREAKS = re.compile(r"\s*[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]\s*")


@dataclass
class Transcript:
    """A finished job: its segments exactly as sent to browsers, and what is known of the whole."""

    segments: list[dict]
    language: str = ""
    duration: float = 0.0
    title: str = ""
    num_speakers: int | None = None

    @property
    def text(self) -> str:
        """The whole text: the segments' texts joined, trimmed."""
        return _join_texts((segment.get("text") or "" for segment in self.segments), self.language)


def is_rtl(text: str) -> bool:
    """Whether text reads right to left: its first strong character (UAX #9 rule P2) is R or AL."""
    isolate_depth = 0  # P2 skips what lies inside isolates
    for char in text:
        bidi_class = unicodedata.bidirectional(char)
        if bidi_class in ("LRI", "RLI", "FSI"):
            isolate_depth += 1
        elif bidi_class == "PDI":
            isolate_depth = max(isolate_depth - 1, 0)
        elif isolate_depth == 0 and bidi_class in ("R", "AL"):
            return True
        elif isolate_depth == 0 and bidi_class == "L":
            return False
    return False


def language_name(code: str) -> str:
    """OpenAI's name for a Whisper language code ("he" -> "hebrew"); an unknown code is returned as it is."""
    return LANGUAGE_NAMES.get(code.lower(), code)


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()


def _join_texts(texts: Iterable[str], language: str) -> str:
    joiner = "" if language.lower() in UNSPACED_LANGUAGES else " "
    return joiner.join(part for part in map(_one_line, texts) if part)


def _speaker(segment: dict) -> str | None:
    speaker = segment.get("speaker")
    return (_one_line(str(speaker)) or None) if speaker else None


def _spoken(segments: list[dict]) -> list[dict]:
    return [segment for segment in segments if _one_line(segment.get("text") or "")]


def _directed_line(text: str, speaker: str | None) -> str:
    """``speaker: text`` (or text alone) with the bidi marks of the module's RTL rule."""
    if speaker is None:
        return RLM + text if is_rtl(text) else text
    if is_rtl(text):
        return f"{RLM}{FSI}{speaker}{PDI}: {text}"
    if is_rtl(speaker):
        return f"{LRM}{FSI}{speaker}{PDI}: {text}"
    return f"{speaker}: {text}"


def _clock(seconds: float, decimal_sign: str) -> str:
    total_ms = max(round(seconds * 1000), 0)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole_seconds, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_sign}{ms:03d}"


def _timing(segment: dict, decimal_sign: str) -> str:
    start = float(segment["start"])
    end = max(float(segment["end"]), start)  # a cue may not end before it starts
    return f"{_clock(start, decimal_sign)} --> {_clock(end, decimal_sign)}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render_srt(transcript: Transcript) -> str:
    cues = [
        f"{number}\n{_timing(segment, ',')}\n{_directed_line(_one_line(segment['text']), _speaker(segment))}\n"
        for number, segment in enumerate(_spoken(transcript.segments), start=1)
    ]
    return "\n".join(cues)


def _render_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for segment in _spoken(transcript.segments):
        text = _one_line(segment["text"])
        cue_text = (RLM if is_rtl(text) else "") + _vtt_escape(text)  # direction from the text, not its escapes
        if speaker := _speaker(segment):
            cue_text = f"<v {_vtt_escape(speaker)}>{cue_text}</v>"
        blocks.append(f"{_timing(segment, '.')}\n{cue_text}\n")
    return "\n".join(blocks)


def _render_txt(transcript: Transcript) -> str:
    spoken = _spoken(transcript.segments)
    if not any(map(_speaker, spoken)):
        return "".join(_directed_line(_one_line(segment["text"]), None) + "\n" for segment in spoken)
    paragraphs = [
        _directed_line(_join_texts((segment["text"] for segment in turn), transcript.language), speaker)
        for speaker, turn in groupby(spoken, key=_speaker)
    ]
    return "\n\n".join(paragraphs) + "\n"


def _render_json(transcript: Transcript) -> str:
    document = {
        "language": transcript.language,
        "duration": transcript.duration,
        "title": transcript.title,
        "num_speakers": transcript.num_speakers,
        "text": transcript.text,
        "segments": transcript.segments,
    }
    return json.dumps(document, ensure_ascii=False)


def _render_tsv(transcript: Transcript) -> str:
    # whisper's tsv writer: integer milliseconds, no quoting (no field holds a tab or line break)
    rows = ["start\tend\tspeaker\ttext"]
    for segment in transcript.segments:
        start_ms, end_ms = round(1000 * float(segment["start"])), round(1000 * float(segment["end"]))
        rows.append(f"{start_ms}\t{end_ms}\t{_speaker(segment) or ''}\t{_one_line(segment.get('text') or '')}")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class ExportFormat:
    media_type: str  # without parameters; render() adds the charset
    extension: str  # without the dot
    render: Callable[[Transcript], str]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "srt": ExportFormat("application/x-subrip", "srt", _render_srt),
    "vtt": ExportFormat("text/vtt", "vtt", _render_vtt),
    "txt": ExportFormat("text/plain", "txt", _render_txt),
    "json": ExportFormat("application/json", "json", _render_json),
    "tsv": ExportFormat("text/tab-separated-values", "tsv", _render_tsv),
}


def render(fmt: str, transcript: Transcript) -> tuple[str, str]:
    """The transcript as a file in one of EXPORT_FORMATS: (body, media type with charset)."""
    export_format = EXPORT_FORMATS.get(fmt)
    if export_format is None:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(sorted(EXPORT_FORMATS))}")
    return export_format.render(transcript), f"{export_format.media_type}; charset=utf-8"


OPENAI_RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
OPENAI_GRANULARITIES = ("segment", "word")


def openai_response(
    response_format: str,
    transcript: Transcript,
    *,
    timestamp_granularities: Sequence[str] = (),
    task: str = "transcribe",
) -> tuple[str | dict, str]:
    """The body of POST /v1/audio/transcriptions for response_format: a dict to JSON-encode, or text; and its media type.

    verbose_json carries segments when "segment" is asked for or nothing is (OpenAI's
    default), words when "word" is. Segment texts are kept as given (Whisper's leading
    space included, as OpenAI returns them); words are trimmed, as OpenAI's are.
    """
    if response_format == "json":
        return {"text": transcript.text}, "application/json"
    if response_format == "text":
        return transcript.text, "text/plain; charset=utf-8"
    if response_format in ("srt", "vtt"):
        return render(response_format, transcript)
    if response_format != "verbose_json":
        raise ValueError(f"unknown response_format {response_format!r}; valid formats: {', '.join(sorted(OPENAI_RESPONSE_FORMATS))}")
    unknown = sorted(set(timestamp_granularities) - set(OPENAI_GRANULARITIES))
    if unknown:
        raise ValueError(f"unknown timestamp_granularities {unknown}; valid: {', '.join(OPENAI_GRANULARITIES)}")
    body: dict = {
        "task": task,
        "language": language_name(transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if not timestamp_granularities or "segment" in timestamp_granularities:
        body["segments"] = [
            {
                "id": position,  # the gateway's ids may be strings ("3.1" for a split segment); OpenAI's are ints
                "seek": 0,
                "start": segment["start"],
                "end": segment["end"],
                "text": segment.get("text") or "",
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for position, segment in enumerate(transcript.segments)
        ]
    if "word" in timestamp_granularities:
        body["words"] = [
            {"word": word["word"].strip(), "start": word["start"], "end": word["end"]}
            for segment in transcript.segments
            for word in segment.get("words") or ()
        ]
    return body, "application/json"
