"""The Deepgram backend: the real deepgram-sdk against a local server that speaks Deepgram's wire format.

`fake_deepgram.FakeDeepgram` computes its answers from the audio it receives
(faster-whisper tiny.en, speakers from the reference RTTM), so these tests
check what the engine makes of Deepgram's format: words, utterances,
paragraphs, speaker labels, and every kind of failure, with the key kept out
of every message and log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import traceback

import pytest
from fake_deepgram import FakeDeepgram, WhisperTranscriber, read_rttm, sha256

from conftest import JFK_FLAC, JFK_TEXT, SAMPLE_STM, SAMPLE_WAV, TESTDATA, free_port, normalise, stm_text, wer
from transcription.asr import engine
from transcription.asr.deepgram_engine import DeepgramOptions, fetch_transcript, segments_with_speakers, transcribe_deepgram
from transcription.asr.models import BUNDLED, materialize_bundled
from transcription.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, ServiceError, Unavailable

KEY = "dg5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8"  # made up; must never show up in a message or a log
SAMPLE_RTTM = TESTDATA / "pyannote-sample" / "sample.rttm"
# Deepgram numbers speakers its own way: Sheila (speaker91, second to talk) is 0 here, so the
# engine's first-appearance labels (Diane = SPEAKER_00) differ from Deepgram's numbers.
SPEAKER_NUMBERS = {"speaker90": 1, "speaker91": 0}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    model_dir = materialize_bundled(BUNDLED["tiny.en"], tmp_path_factory.mktemp("models"))
    diarization = {sha256(SAMPLE_WAV.read_bytes()): read_rttm(SAMPLE_RTTM)}
    with FakeDeepgram(KEY, WhisperTranscriber(model_dir), diarization=diarization, speaker_numbers=SPEAKER_NUMBERS) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    yield
    fake.release()


async def run(fake, path_or_bytes, options: DeepgramOptions, **kwargs) -> list[engine.Event]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    kwargs = {"api_key": KEY, "base_url": fake.url, "timeout": 60, "max_retries": 0, **kwargs}
    mimetype = kwargs.pop("mimetype", None)
    events: list[engine.Event] = []
    await transcribe_deepgram(data, mimetype, options, emit=events.append, **kwargs)
    return events


def segments(events) -> list[engine.Segment]:
    return [e for e in events if isinstance(e, engine.Segment)]


def channel(answer: dict) -> dict:
    return answer["results"]["channels"][0]


def check_event_order(events, duration: float):
    assert isinstance(events[0], engine.Started) and isinstance(events[-1], engine.Completed)
    assert isinstance(events[-2], engine.Progress) and events[-2].processed_seconds == pytest.approx(duration)
    found = segments(events)
    assert [s.index for s in found] == list(range(len(found)))
    assert events[-1].segment_count == len(found)
    assert events[-1].audio_seconds == pytest.approx(duration)
    for before, after in zip(found, found[1:]):
        assert before.start <= after.start


# -- transcripts ----------------------------------------------------------------------


async def test_jfk_through_the_sdk(fake):
    events = await run(fake, JFK_FLAC, DeepgramOptions(language="en"))
    (request,) = fake.requests
    (answer,) = fake.responses

    # what the SDK sent
    assert request.path == "/v1/listen" and request.authorized
    assert request.param("model") == "nova-3" and request.param("language") == "en"
    for name in ("punctuate", "smart_format", "paragraphs", "utterances"):
        assert request.param(name) == "true", name
    assert request.param("diarize") == "false"
    assert "detect_language" not in request.query
    assert request.content_type == "application/octet-stream"
    assert request.body_length == JFK_FLAC.stat().st_size
    assert KEY not in str(request.headers)

    # what the engine made of the answer
    started, completed = events[0], events[-1]
    assert started == engine.Started("en", 1.0, False, pytest.approx(11.0, abs=0.1), "nova-3")
    check_event_order(events, answer["metadata"]["duration"])
    assert completed.language == "en"
    found = segments(events)
    text = " ".join(s.text for s in found)
    assert wer(JFK_TEXT, text) <= 0.1, text
    utterances = answer["results"]["utterances"]
    assert [(s.start, s.end, s.text) for s in found] == [(u["start"], u["end"], u["transcript"]) for u in utterances]
    words = [w for s in found for w in s.words]
    wire = channel(answer)["alternatives"][0]["words"]
    assert [w.word for w in words] == [" " + w["punctuated_word"] for w in wire]  # faster-whisper's leading space
    assert [(w.start, w.end, w.probability) for w in words] == [(w["start"], w["end"], w["confidence"]) for w in wire]
    assert any(w.word.endswith((",", ".")) for w in words), "punctuated words expected"
    for s in found:
        assert s.text == "".join(w.word for w in s.words).strip()
        assert all(s.start <= w.start <= w.end <= s.end for w in s.words)


async def test_language_detection_and_mimetype(fake):
    events = await run(fake, JFK_FLAC, DeepgramOptions(), mimetype="audio/flac")
    (request,) = fake.requests
    assert request.param("detect_language") == "true" and "language" not in request.query
    assert request.content_type == "audio/flac"
    started = events[0]
    assert started.language == "en" and started.language_detected
    assert started.language_probability == pytest.approx(channel(fake.responses[0])["language_confidence"])
    assert events[-1].language == "en"


async def test_word_timestamps_off_and_no_punctuation(fake):
    options = DeepgramOptions(language="en", punctuate=False, smart_format=False, word_timestamps=False)
    events = await run(fake, JFK_FLAC, options)
    (request,) = fake.requests
    assert request.param("punctuate") == "false" and request.param("smart_format") == "false"
    found = segments(events)
    assert found and all(s.words == [] for s in found)
    text = " ".join(s.text for s in found)
    assert text == text.lower() and "," not in text and "." not in text
    assert wer(JFK_TEXT, text) <= 0.1


def check_diarized(pairs, answer):
    """Two speakers, labelled by first appearance; Diane (speaker90 in the RTTM) talks first."""
    labels = [label for _, label in pairs]
    assert set(labels) == {"SPEAKER_00", "SPEAKER_01"}
    assert labels[0] == "SPEAKER_00"
    assert labels.index("SPEAKER_01") > 0
    by_text = {s.text: label for s, label in pairs}
    sheila = [label for text, label in by_text.items() if "Sheila" in text]
    diane = [label for text, label in by_text.items() if "Diane" in text]
    assert sheila == ["SPEAKER_01"] and diane == ["SPEAKER_00"], by_text
    # and Deepgram numbered them the other way round, so the renaming mattered
    assert channel(answer)["alternatives"][0]["words"][0]["speaker"] == SPEAKER_NUMBERS["speaker90"] == 1


async def test_sample_diarized_utterances(fake):
    options = DeepgramOptions(language="en", diarize=True)
    response = await fetch_transcript(
        SAMPLE_WAV.read_bytes(), "audio/wav", options, api_key=KEY, base_url=fake.url, timeout=300, max_retries=0
    )
    (answer,) = fake.responses
    assert fake.requests[0].param("diarize") == "true"
    pairs = segments_with_speakers(response, options)  # the SDK's parsed model, as the service gets it
    check_diarized(pairs, answer)
    utterances = answer["results"]["utterances"]
    assert len(pairs) == len(utterances) >= 4
    first_seen: dict[int, str] = {}
    for (segment, label), utterance in zip(pairs, utterances):
        assert (segment.start, segment.end, segment.text) == (utterance["start"], utterance["end"], utterance["transcript"])
        assert label == first_seen.setdefault(utterance["speaker"], f"SPEAKER_{len(first_seen):02d}")
        assert [w.word for w in segment.words] == [" " + w["punctuated_word"] for w in utterance["words"]]
    text = " ".join(s.text for s, _ in pairs)
    assert normalise(text) == normalise(channel(answer)["alternatives"][0]["transcript"])
    assert wer(stm_text(SAMPLE_STM), text) <= 0.35, text

    # the events the service streams: the same segments, each carrying its speaker
    events = await run(fake, SAMPLE_WAV, options)
    check_event_order(events, answer["metadata"]["duration"])
    streamed = segments(events)
    assert [s.speaker for s in streamed] == [label for _, label in pairs]
    assert streamed == [s for s, _ in pairs]


async def test_sample_paragraph_sentences_when_no_utterances(fake):
    options = DeepgramOptions(language="en", diarize=True, utterances=False)
    response = await fetch_transcript(SAMPLE_WAV.read_bytes(), None, options, api_key=KEY, base_url=fake.url, timeout=300, max_retries=0)
    (answer,) = fake.responses
    assert fake.requests[0].param("utterances") == "false" and "utterances" not in answer["results"]
    pairs = segments_with_speakers(response, options)
    check_diarized(pairs, answer)
    paragraphs = channel(answer)["alternatives"][0]["paragraphs"]["paragraphs"]
    sentences = [(s, p["speaker"]) for p in paragraphs for s in p["sentences"]]
    assert len(pairs) == len(sentences) > len(paragraphs)
    for (segment, _), (sentence, _) in zip(pairs, sentences):
        assert (segment.start, segment.end, segment.text) == (sentence["start"], sentence["end"], sentence["text"])
        assert segment.text == "".join(w.word for w in segment.words).strip()
    assert sum(len(s.words) for s, _ in pairs) == len(channel(answer)["alternatives"][0]["words"])


async def test_whole_transcript_when_neither(fake):
    options = DeepgramOptions(language="en", utterances=False, paragraphs=False)
    events = await run(fake, JFK_FLAC, options)
    (found,) = segments(events)
    alternative = channel(fake.responses[0])["alternatives"][0]
    assert found.text == alternative["transcript"] and len(found.words) == len(alternative["words"])
    # diarized: one segment per run of one speaker
    options = dataclasses.replace(options, diarize=True)
    response = await fetch_transcript(SAMPLE_WAV.read_bytes(), None, options, api_key=KEY, base_url=fake.url, timeout=300, max_retries=0)
    pairs = segments_with_speakers(response, options)
    check_diarized(pairs, fake.responses[-1])
    assert all(a != b for (_, a), (_, b) in zip(pairs, pairs[1:]))


def test_speaker_labels_follow_first_appearance():
    def utterance(start, speaker):
        word = {"word": "hi", "punctuated_word": "Hi.", "start": start, "end": start + 0.5, "confidence": 0.5, "speaker": speaker}
        return {"start": start, "end": start + 0.5, "confidence": 0.5, "transcript": "Hi.", "words": [word], "speaker": speaker}

    answer = {
        "metadata": {"duration": 5.0},
        "results": {
            "channels": [{"alternatives": [{"transcript": "", "words": []}]}],
            "utterances": [utterance(t, s) for t, s in ((2, 0), (0, 2), (1, 2), (3, 1))],
        },
    }
    pairs = segments_with_speakers(answer, DeepgramOptions())
    assert [(s.start, label) for s, label in pairs] == [(0, "SPEAKER_00"), (1, "SPEAKER_00"), (2, "SPEAKER_01"), (3, "SPEAKER_02")]
    assert pairs[0][0].words == [engine.Word(0, 0.5, " Hi.", 0.5)]
    assert DeepgramOptions(model="base").cache_key() != engine.Options(model="base").cache_key()


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, headers, kind, words",
    [
        (400, {}, InvalidArgument, "failed to process audio"),
        (402, {}, FailedPrecondition, "no credit"),
        (403, {}, FailedPrecondition, "DEEPGRAM_API_KEY"),
        (404, {}, FailedPrecondition, "base URL"),
        (413, {}, InvalidArgument, "Payload too large"),
        (429, {"Retry-After": "17"}, ResourceExhausted, "retry in 17 s"),
        (500, {}, Unavailable, "try again later"),
        (502, {}, Unavailable, "BAD_GATEWAY"),
        (503, {}, Unavailable, "SERVICE_UNAVAILABLE"),
    ],
)
async def test_error_statuses(fake, status, headers, kind, words):
    fake.respond_next(status, headers=headers)
    with pytest.raises(ServiceError) as raised:
        await run(fake, JFK_FLAC, DeepgramOptions(language="en"))
    assert type(raised.value) is kind
    assert str(status) in raised.value.message and words in raised.value.message
    assert "request_id" in raised.value.message  # Deepgram's id, for its support
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_not_json_is_unavailable(fake):
    fake.respond_next(200, b"<html>gateway says hi</html>")
    with pytest.raises(Unavailable, match="not a transcript"):
        await run(fake, JFK_FLAC, DeepgramOptions(language="en"))


async def test_wrong_key(fake):
    wrong = "dg0000000000000000000000000000000000wrong"
    with pytest.raises(FailedPrecondition) as raised:
        await run(fake, JFK_FLAC, DeepgramOptions(language="en"), api_key=wrong)
    assert "rejected DEEPGRAM_API_KEY" in raised.value.message and "INVALID_AUTH" in raised.value.message
    assert wrong not in raised.value.message and not fake.requests[0].authorized


async def test_deepgram_refusals(fake):
    with pytest.raises(InvalidArgument, match="No such model/language/tier combination found"):
        await run(fake, JFK_FLAC, DeepgramOptions(language="he"))
    with pytest.raises(InvalidArgument, match="No such model/language/tier combination found"):
        await run(fake, JFK_FLAC, DeepgramOptions(model="whisper-huge-9000"))
    with pytest.raises(InvalidArgument, match="failed to process audio"):
        await run(fake, b"this is not audio\n" * 100, DeepgramOptions(language="en"))


@pytest.mark.parametrize(
    "api_key, base_url, words",
    [
        ("", None, "needs DEEPGRAM_API_KEY"),
        ("   ", None, "needs DEEPGRAM_API_KEY"),
        (KEY[:20] + " " + KEY[20:], None, "characters an HTTP header cannot carry"),
        (KEY + "\r\nX-Evil: 1", None, "characters an HTTP header cannot carry"),
        (KEY + "é", None, "characters an HTTP header cannot carry"),
        (KEY, "ftp://127.0.0.1:1", "http:// or https://"),
    ],
)
async def test_configuration_errors_send_nothing(fake, api_key, base_url, words):
    with pytest.raises(FailedPrecondition) as raised:
        await run(fake, JFK_FLAC, DeepgramOptions(), api_key=api_key, base_url=base_url or fake.url)
    assert words in raised.value.message
    assert KEY[:20] not in raised.value.message
    assert fake.requests == []


async def test_unreachable_is_unavailable():
    began = time.monotonic()
    with pytest.raises(Unavailable, match="could not be reached"):
        await transcribe_deepgram(
            b"audio",
            None,
            DeepgramOptions(),
            api_key=KEY,
            base_url=f"http://127.0.0.1:{free_port()}",
            emit=lambda e: None,
            timeout=10,
            max_retries=0,
        )
    assert time.monotonic() - began < 5


async def test_retries_then_succeeds(fake):
    fake.respond_next(503)
    events = await run(fake, JFK_FLAC, DeepgramOptions(language="en"), max_retries=1)
    assert len(fake.requests) == 2 and segments(events)


async def test_stalled_deepgram_times_out(fake):
    fake.stall()
    began = time.monotonic()
    with pytest.raises(Unavailable, match=r"did not answer within 1\.5 s"):
        await run(fake, JFK_FLAC, DeepgramOptions(language="en"), timeout=1.5, max_retries=2)
    assert 1.4 < time.monotonic() - began < 3.0
    assert len(fake.requests) == 1


async def test_cancelling_abandons_the_request(fake):
    fake.stall()
    task = asyncio.ensure_future(run(fake, JFK_FLAC, DeepgramOptions(language="en"), timeout=60))
    while not fake.requests:
        await asyncio.sleep(0.05)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 1


# -- the key stays secret -------------------------------------------------------------


async def test_key_is_in_no_message_and_no_log(fake, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # root: the engine's logger, the SDK's route, httpx, httpcore
    for name in ("transcription", "httpx", "httpcore", "deepgram", "fern", "websockets"):
        caplog.set_level(logging.DEBUG, logger=name)
    raised: list[BaseException] = []

    async def attempt(**kwargs):
        try:
            await run(fake, JFK_FLAC, DeepgramOptions(language="en", diarize=True), **kwargs)
        except ServiceError as exc:
            raised.append(exc)

    await attempt()  # a success
    for status, headers in ((400, {}), (402, {}), (403, {}), (429, {"Retry-After": "3"}), (500, {})):
        fake.respond_next(status, headers=headers)
        await attempt()
    fake.respond_next(401, {"err_code": "INVALID_AUTH", "err_msg": f"Invalid credentials: Token {KEY}"})  # a server that echoes the key
    await attempt()
    fake.respond_next(200, f"Authorization: Token {KEY}".encode())
    await attempt()
    await attempt(api_key=KEY[:-4] + "oops")  # a wrong key is a secret too
    await attempt(api_key=KEY + "\n")  # stripped: still works
    await attempt(api_key=KEY[:20] + "\x7f" + KEY[20:])
    await attempt(base_url=f"http://127.0.0.1:{free_port()}")
    fake.stall()
    await attempt(timeout=0.5)
    fake.release()

    assert len(raised) == 11, [repr(e) for e in raised]
    assert {type(e) for e in raised} == {InvalidArgument, FailedPrecondition, ResourceExhausted, Unavailable}
    texts = [caplog.text, *capfd.readouterr()]
    for exc in raised:
        texts += [str(exc), repr(exc), exc.message, "".join(traceback.format_exception(exc)), repr(exc.__context__)]
    for record in caplog.records:
        texts += [record.getMessage(), str(record.__dict__)]
    for text in texts:
        assert KEY not in text and KEY[:-4] + "oops" not in text and KEY[:20] not in text
    # the logs were there to look at: the SDK's own lines, httpx's, and the failures
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("deepgram sdk: Making HTTP request") and "[REDACTED]" in m for m in messages)
    assert any(r.name.startswith("httpx") for r in caplog.records) and any(r.name.startswith("httpcore") for r in caplog.records)
    assert any("deepgram request failed (RESOURCE_EXHAUSTED)" in m for m in messages)
