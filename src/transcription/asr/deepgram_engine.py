"""Transcribe with Deepgram's pre-recorded API and report it as the local engine does.

The audio goes to ``POST /v1/listen`` through the official SDK (``deepgram-sdk``,
its async client). Deepgram answers once, with the whole transcript, so the
events come out together after the answer, in the order `engine.transcribe`
emits them: `engine.Started`, then per segment an `engine.Segment` and an
`engine.Progress`, a final `engine.Progress`, and `engine.Completed`.

Segments are Deepgram's utterances when it returns them, else the sentences of
its paragraphs, else one segment for the whole transcript (one per run of the
same speaker when the words carry speakers). Deepgram's speaker numbers become
``SPEAKER_00``, ``SPEAKER_01``, ... in the order the speakers first talk, as
the diarizer names them.

Failures become `ServiceError`s: a rejected key or an account without credit
is FAILED_PRECONDITION (the service is misconfigured, retrying will not help),
a request Deepgram refuses is INVALID_ARGUMENT with Deepgram's own words, its
rate limit is RESOURCE_EXHAUSTED, and a Deepgram that is down, slow past
``timeout`` or unreachable is UNAVAILABLE. The API key is never part of a
message, a log line or an exception chain: every text taken from the SDK,
httpx or Deepgram's answer is scrubbed of it, and the SDK's exceptions are not
chained (``raise ... from None``) because httpx's carry the request, headers
included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transcription.asr import engine
from transcription.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, ServiceError, Unavailable

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nova-3"
DEFAULT_BASE_URL = "https://api.deepgram.com"
DEFAULT_TIMEOUT_SECONDS = 600.0
_REDACTED = "[REDACTED]"
# What an HTTP header value can carry without an encoding error that would quote it.
_KEY_PATTERN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class DeepgramOptions:
    """What is asked of Deepgram; the fields map one to one onto ``/v1/listen`` query parameters."""

    model: str = DEFAULT_MODEL
    language: str | None = None  # a BCP-47 tag ("en", "en-US", "multi"); None = detect_language
    punctuate: bool = True
    smart_format: bool = True
    paragraphs: bool = True
    utterances: bool = True
    diarize: bool = False
    word_timestamps: bool = True  # Deepgram always times words; False leaves Segment.words empty, as faster-whisper does

    def cache_key(self) -> str:
        # "deepgram|" first: never the key of a faster-whisper transcript (both have a model named "base")
        return "|".join(
            str(v)
            for v in (
                "deepgram",
                self.model,
                self.language,
                self.punctuate,
                self.smart_format,
                self.paragraphs,
                self.utterances,
                self.diarize,
                self.word_timestamps,
            )
        )


# -- the call ------------------------------------------------------------------------


async def transcribe_deepgram(
    audio_bytes: bytes,
    mimetype: str | None,
    options: DeepgramOptions,
    *,
    api_key: str,
    base_url: str | None = None,
    emit: Callable[[engine.Event], None],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_retries: int = 2,
) -> None:
    """Send ``audio_bytes`` to Deepgram and ``emit`` the transcript as engine events.

    ``base_url`` replaces ``https://api.deepgram.com`` (a self-hosted Deepgram,
    a test server). ``timeout`` bounds the whole call, the SDK's retries (on
    429, 5xx and dropped connections, ``max_retries`` of them) included; on
    cancellation the HTTP request is abandoned at once.
    """
    began = time.monotonic()
    response = await fetch_transcript(
        audio_bytes, mimetype, options, api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
    )
    emit_events(response, options, emit, began=began)


async def fetch_transcript(
    audio_bytes: bytes,
    mimetype: str | None,
    options: DeepgramOptions,
    *,
    api_key: str,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_retries: int = 2,
) -> Any:
    """Deepgram's answer as the SDK parses it (``ListenV1Response``); failures as `ServiceError`s."""
    if not api_key or not api_key.strip():
        raise FailedPrecondition("the deepgram backend needs DEEPGRAM_API_KEY set on the ASR service")
    api_key = api_key.strip()
    if not _KEY_PATTERN.fullmatch(api_key):
        raise FailedPrecondition("DEEPGRAM_API_KEY holds spaces or characters an HTTP header cannot carry; check its value")
    if not audio_bytes:
        raise InvalidArgument("the audio holds no bytes")
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    if not re.match(r"https?://[^/\s]+", base):
        raise FailedPrecondition(f"the Deepgram base URL must be an http:// or https:// URL, not {_scrub(base, api_key)!r}")
    if timeout <= 0:
        raise InvalidArgument("timeout must be positive")
    try:
        import httpx
        from deepgram import AsyncDeepgramClient
        from deepgram.core.api_error import ApiError
        from deepgram.core.logging import Logger
        from deepgram.core.parse_error import ParsingError
        from deepgram.environment import DeepgramClientEnvironment
    except ImportError as exc:  # the asr extra declares it; a trimmed install may lack it
        raise FailedPrecondition(f"the deepgram backend needs the deepgram-sdk package ({exc.name} is missing)") from None

    ws_base = "ws" + base.removeprefix("http")
    environment = DeepgramClientEnvironment(base=base, production=ws_base, agent=ws_base, agent_rest=base)
    sdk_log = Logger(level="debug", logger=_SdkLog(api_key), silent=False)
    params = _query(options)
    request_options: dict[str, Any] = {"max_retries": max_retries, "timeout": timeout}
    if mimetype:
        # the SDK sends "content-type: application/octet-stream"; the same lower-case name replaces it
        request_options["additional_headers"] = {"content-type": mimetype}
    log.info("deepgram request: %d bytes, %s", len(audio_bytes), ", ".join(f"{k}={v}" for k, v in params.items() if v is not None))
    try:
        async with asyncio.timeout(timeout):
            # follow_redirects=False: a redirect would carry the key to wherever it points
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
                client = AsyncDeepgramClient(
                    api_key=api_key,
                    environment=environment,
                    httpx_client=http,
                    timeout=timeout,
                    max_retries=max_retries,
                    logging=sdk_log,
                )
                response = await client.listen.v1.media.transcribe_file(request=audio_bytes, request_options=request_options, **params)
    except ApiError as exc:
        error = _api_error(exc.status_code, exc.body, exc.headers, api_key)
    except ParsingError as exc:
        error = _api_error(exc.status_code or 200, None, None, api_key)
    except TimeoutError:  # asyncio.timeout: the whole call, retries included
        error = Unavailable(f"Deepgram did not answer within {timeout:g} s; try again, or a shorter file")
    except httpx.TimeoutException as exc:
        error = Unavailable(f"Deepgram did not answer within {timeout:g} s ({type(exc).__name__}); try again, or a shorter file")
    except httpx.TransportError as exc:
        detail = _scrub(str(exc), api_key)[:300] or type(exc).__name__
        error = Unavailable(f"Deepgram could not be reached at {_scrub(base, api_key)}: {detail}")
    except Exception as exc:  # noqa: BLE001 - anything else from the SDK: not chained, the request may ride along
        log.error("deepgram request failed unexpectedly: %s: %s", type(exc).__name__, _scrub(str(exc), api_key)[:500])
        error = ServiceError(f"the Deepgram request failed unexpectedly ({type(exc).__name__}); see the ASR service log")
    else:
        error = None
    if error is not None:
        log.warning("deepgram request failed (%s): %s", error.status, error.message)
        raise error from None
    if _get(response, "results") is None:  # ListenV1AcceptedResponse: only with a callback, which is never sent
        raise Unavailable("Deepgram answered without a transcript (accepted for later, though no callback was asked for)")
    log.info("deepgram answered: request_id=%s", _get(_get(response, "metadata"), "request_id"))
    return response


def _query(options: DeepgramOptions) -> dict[str, Any]:
    """The SDK's keyword arguments: each becomes a query parameter (None ones are left out)."""
    return {
        "model": options.model or DEFAULT_MODEL,
        "language": options.language or None,
        "detect_language": None if options.language else True,
        "punctuate": options.punctuate,
        "smart_format": options.smart_format,
        "paragraphs": options.paragraphs,
        "utterances": options.utterances,
        "diarize": options.diarize,
    }


# -- the answer as events ---------------------------------------------------------------


def emit_events(response: Any, options: DeepgramOptions, emit: Callable[[engine.Event], None], *, began: float | None = None) -> None:
    """Emit a Deepgram answer (the SDK's model or its JSON as a dict) as engine events."""
    began = time.monotonic() if began is None else began
    metadata = _get(response, "metadata")
    channel = _first(_get(_get(response, "results"), "channels"))
    pairs = segments_with_speakers(response, options)
    duration = float(_get(metadata, "duration") or 0.0) or max((s.end for s, _ in pairs), default=0.0)
    detected = _get(channel, "detected_language")
    language = options.language or detected or ""
    if options.language:
        probability = 1.0
    else:
        probability = float(_get(channel, "language_confidence") or 0.0)
    emit(
        engine.Started(
            language=language,
            language_probability=probability,
            language_detected=not options.language,
            duration_seconds=duration,
            model=options.model or DEFAULT_MODEL,
        )
    )
    for segment, _ in pairs:
        emit(segment)
        emit(engine.Progress(processed_seconds=min(segment.end, duration), total_seconds=duration))
    emit(engine.Progress(processed_seconds=duration, total_seconds=duration))
    emit(engine.Completed(segment_count=len(pairs), processing_seconds=time.monotonic() - began, audio_seconds=duration, language=language))


def segments_with_speakers(response: Any, options: DeepgramOptions) -> list[tuple[engine.Segment, str | None]]:
    """Each segment with its speaker (``SPEAKER_00``, ... by first appearance; None without diarization).

    From Deepgram's utterances if any, else its paragraphs' sentences, else
    the whole transcript (split where the words' speaker changes).
    """
    results = _get(response, "results")
    alternative = _first(_get(_first(_get(results, "channels")), "alternatives"))
    words = list(_get(alternative, "words") or [])
    pieces: list[tuple[float, float, str, Sequence[Any], float | None, int | None]] = []  # start, end, text, words, confidence, speaker
    utterances = sorted(_get(results, "utterances") or [], key=lambda u: (_num(u, "start"), _num(u, "end")))
    sentences = [
        (sentence, _get(paragraph, "speaker"))
        for paragraph in (_get(_get(alternative, "paragraphs"), "paragraphs") or [])
        for sentence in (_get(paragraph, "sentences") or [])
    ]
    if utterances:
        for u in utterances:
            pieces.append(
                (
                    _num(u, "start"),
                    _num(u, "end"),
                    _get(u, "transcript") or "",
                    _get(u, "words") or [],
                    _get(u, "confidence"),
                    _get(u, "speaker"),
                )
            )
    elif sentences:
        for (sentence, speaker), its_words in zip(sentences, _words_by_sentence(words, [s for s, _ in sentences])):
            pieces.append(
                (
                    _num(sentence, "start"),
                    _num(sentence, "end"),
                    _get(sentence, "text") or "",
                    its_words,
                    _mean_confidence(its_words),
                    speaker,
                )
            )
    elif words or (_get(alternative, "transcript") or "").strip():
        runs = _speaker_runs(words)
        if len(runs) <= 1:
            start = _num(words[0], "start") if words else 0.0
            end = _num(words[-1], "end") if words else 0.0
            speaker = _get(words[0], "speaker") if words else None
            pieces.append((start, end, _get(alternative, "transcript") or "", words, _get(alternative, "confidence"), speaker))
        else:
            for run in runs:
                text = " ".join(_word_text(w) for w in run)
                pieces.append((_num(run[0], "start"), _num(run[-1], "end"), text, run, _mean_confidence(run), _get(run[0], "speaker")))

    labels: dict[int, str] = {}
    pairs = []
    for index, (start, end, text, its_words, confidence, speaker) in enumerate(pieces):
        label = None
        if speaker is not None:
            label = labels.setdefault(int(speaker), f"SPEAKER_{len(labels):02d}")
        segment = engine.Segment(
            index=index,
            start=round(start, 3),
            end=round(end, 3),
            text=text.strip(),
            # Deepgram has no log-probabilities: the log of its confidence stands in; the other two have no counterpart
            avg_logprob=math.log(max(float(confidence), 1e-6)) if confidence is not None else 0.0,
            no_speech_prob=0.0,
            compression_ratio=0.0,
            words=[_word(w) for w in its_words] if options.word_timestamps else [],
            speaker=label,
        )
        pairs.append((segment, label))
    return pairs


def _word(w: Any) -> engine.Word:
    # faster-whisper's words start with a space (" Americans,"); Deepgram's punctuated_word has none
    return engine.Word(
        start=round(_num(w, "start"), 3),
        end=round(_num(w, "end"), 3),
        word=" " + _word_text(w),
        probability=float(_get(w, "confidence") or 0.0),
    )


def _word_text(w: Any) -> str:
    return (_get(w, "punctuated_word") or _get(w, "word") or "").strip()


def _words_by_sentence(words: Sequence[Any], sentences: Sequence[Any]) -> list[list[Any]]:
    """Words in order, each to the sentence that ends at or after it (the rest to the last sentence)."""
    groups: list[list[Any]] = [[] for _ in sentences]
    current = 0
    for w in words:
        while current < len(sentences) - 1 and _num(w, "end") > _num(sentences[current], "end") + 1e-3:
            current += 1
        groups[current].append(w)
    return groups


def _speaker_runs(words: Sequence[Any]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for w in words:
        if runs and _get(runs[-1][-1], "speaker") == _get(w, "speaker"):
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def _mean_confidence(words: Sequence[Any]) -> float | None:
    values = [float(c) for w in words if (c := _get(w, "confidence")) is not None]
    return sum(values) / len(values) if values else None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of the SDK's pydantic models (extra fields included) or of plain JSON dicts."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "__pydantic_extra__", None) or {}
        value = extra.get(name)
    return default if value is None else value


def _num(obj: Any, name: str) -> float:
    return float(_get(obj, name) or 0.0)


def _first(items: Any) -> Any:
    return items[0] if items else None


# -- errors and secrets ---------------------------------------------------------------


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, _REDACTED) if secret else text


def _deepgram_says(body: Any) -> str:
    """Deepgram's explanation from an error body: legacy {err_code, err_msg}, newer {category, message, details}, or text."""
    if isinstance(body, dict):
        code = body.get("err_code") or body.get("category")
        message = body.get("err_msg") or body.get("message") or body.get("details")
        if isinstance(message, (dict, list)):
            message = str(message)
        text = ": ".join(str(p) for p in (code, message) if p)
        request_id = body.get("request_id")
        return f"{text} (request_id {request_id})" if request_id and text else text
    if isinstance(body, (str, bytes)):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return " ".join(text.split())[:300]
    return "" if body is None else str(body)[:300]


def _api_error(status: int | None, body: Any, headers: dict[str, str] | None, api_key: str) -> ServiceError:
    said = _scrub(_deepgram_says(body), api_key)
    because = f" ({status} {said})" if said else f" ({status})"
    if status == 401:
        return FailedPrecondition(f"Deepgram rejected DEEPGRAM_API_KEY{because}; check the key set on the ASR service")
    if status == 403:
        return FailedPrecondition(
            f"DEEPGRAM_API_KEY may not make this request{because}; check its project's permissions for the model and features asked for"
        )
    if status == 402:
        return FailedPrecondition(f"the Deepgram account has no credit left for transcription{because}")
    if status == 404:
        return FailedPrecondition(f"Deepgram has no /v1/listen at the configured base URL{because}")
    if status == 429:
        retry_after = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
        hint = f"retry in {retry_after} s" if retry_after and retry_after.strip().isdigit() else "retry in a minute"
        return ResourceExhausted(f"Deepgram's rate limit was reached{because}; {hint}")
    if status == 408 or (status is not None and status >= 500):
        return Unavailable(f"Deepgram failed to transcribe{because}; try again later")
    if status is not None and 200 <= status < 300:
        return Unavailable(f"Deepgram answered with something that is not a transcript ({status})")
    if status is not None and 400 <= status < 500:
        return InvalidArgument(f"Deepgram refused the request{because}")
    return Unavailable(f"Deepgram answered with an unexpected status{because}")


class _SdkLog:
    """The SDK's logger interface onto this module's logger, at DEBUG, key scrubbed.

    The SDK already masks Authorization in what it logs; scrubbing the key
    from the whole line is the second lock.
    """

    def __init__(self, secret: str):
        self._secret = secret

    def _log(self, message: str, fields: dict[str, Any]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            text = message + "".join(f" {k}={v}" for k, v in fields.items())
            log.debug("deepgram sdk: %s", _scrub(text, self._secret))

    def debug(self, message: str, **fields: Any) -> None:
        self._log(message, fields)

    info = warn = error = debug

    def __repr__(self) -> str:
        return "<_SdkLog>"
