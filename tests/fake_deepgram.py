"""A local stand-in for Deepgram's pre-recorded API, for tests that run the real SDK.

`FakeDeepgram` is a threaded HTTP server on 127.0.0.1 that answers
``POST /v1/listen`` in Deepgram's wire format:

* ``Authorization: Token <key>`` must carry the key it was built with, else
  401 ``{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", ...}``;
* query parameters are checked as Deepgram does: an unknown ``model`` or a
  ``language`` the model lacks (anything but English here) is 400 "No such
  model/language/tier combination found.", a boolean that is not
  ``true``/``false`` is 400, audio that does not decode is 400 "failed to
  process audio";
* the transcript is computed from the audio it receives, not written down:
  the bytes are decoded (`transcription.audio.decode`) and run through
  faster-whisper (the bundled ``tiny.en``) with word timestamps. Whisper's
  words become Deepgram's ``word`` (lower case, no punctuation) and
  ``punctuated_word`` (as decoded); ``confidence`` is Whisper's word probability;
* with ``diarize=true`` each word gets the speaker of the reference turn that
  holds its midpoint (the shortest such turn where turns overlap, the nearest
  turn when none does), from the turns handed to the constructor for that
  audio (keyed by the sha256 of its bytes: a ``.rttm`` read with `read_rttm`).
  Speaker names become Deepgram's numbers through ``speaker_numbers`` (default:
  sorted names, 0, 1, ...), so a test can number them in an order other than
  first appearance. Audio with no turns is all speaker 0;
* ``utterances=true``: words grouped into utterances, cut at a pause of
  ``utt_split`` seconds (default 0.8, Deepgram's) or where the speaker changes;
* ``paragraphs=true``: sentences (cut after a word ending in . ? !) grouped
  into paragraphs, cut where the speaker changes or at a pause over 1.5 s;
* ``detect_language=true``: ``detected_language`` and ``language_confidence``
  from Whisper's language detection.

It records every request (`RecordedRequest`: path, query, headers with the
key masked, body length) and keeps every JSON answer it gave (``responses``),
and has switches: `respond_next` sends canned answers (any status, JSON or
raw bytes, extra headers such as Retry-After) to the next requests, `stall`
holds answers until `release` (or the server stops).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from transcription import audio
from transcription.audio import SAMPLE_RATE
from transcription.errors import InvalidArgument

KNOWN_MODELS = {
    "nova-3", "nova-3-general", "nova-3-medical", "nova-2", "nova-2-general", "nova-2-meeting",
    "nova-2-phonecall", "nova", "nova-general", "enhanced", "enhanced-general", "base", "base-general",
}  # fmt: skip
BOOLEAN_PARAMS = {
    "punctuate", "paragraphs", "utterances", "smart_format", "diarize", "detect_language",
    "multichannel", "numerals", "profanity_filter", "filler_words", "dictation", "measurements",
}  # fmt: skip
# Deepgram's error bodies (legacy format: err_code, err_msg, request_id) by status
ERROR_BODIES = {
    400: ("Bad Request", "Bad Request: failed to process audio: corrupt or unsupported data"),
    401: ("INVALID_AUTH", "Invalid credentials."),
    402: ("ASR_PAYMENT_REQUIRED", "Project does not have enough credits for an ASR request and does not have an overage agreement."),
    403: ("INSUFFICIENT_PERMISSIONS", "User does not have sufficient permissions."),
    404: ("NOT_FOUND", "Not found."),
    413: ("PAYLOAD_TOO_LARGE", "Payload too large."),
    429: ("TOO_MANY_REQUESTS", "Too many requests. Please try again later"),
    500: ("INTERNAL_SERVER_ERROR", "An internal server error occurred."),
    502: ("BAD_GATEWAY", "Bad gateway."),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable."),
}
MODEL_UUID = "40bd3654-e622-47c4-a111-63a61b23bd2a"  # any stable id: metadata.models lists it


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) turns of an RTTM file."""
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            start, length = float(parts[3]), float(parts[4])
            turns.append((start, start + length, parts[7]))
    return turns


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # Authorization's value masked
    authorized: bool  # Authorization was exactly "Token <the key>"
    body_length: int
    content_type: str | None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Canned:
    status: int
    body: dict | bytes | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WhisperWord:
    start: float
    end: float
    text: str  # as Whisper decoded it, punctuated, no leading space
    probability: float


@dataclass(frozen=True)
class Decoded:
    duration: float
    language: str
    language_probability: float
    words: tuple[WhisperWord, ...]


class WhisperTranscriber:
    """faster-whisper on a model directory, loaded on first use, one decode at a time."""

    def __init__(self, model_dir: Path, cpu_threads: int = 1):  # one thread: no OpenMP spinning against the services under test
        self.model_dir = model_dir
        self.cpu_threads = cpu_threads
        self._model = None
        self._lock = threading.Lock()

    def __call__(self, pcm) -> Decoded:
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads)
            segments, info = self._model.transcribe(pcm, language="en", word_timestamps=True, beam_size=5, vad_filter=True)
            words = tuple(
                WhisperWord(round(w.start, 3), round(w.end, 3), w.word.strip(), round(float(w.probability), 4))
                for s in segments
                for w in (s.words or [])
                if w.word.strip()
            )
        return Decoded(pcm.size / SAMPLE_RATE, info.language, float(info.language_probability), words)


class FakeDeepgram:
    def __init__(
        self,
        api_key: str,
        transcriber,
        *,
        diarization: dict[str, list[tuple[float, float, str]]] | None = None,
        speaker_numbers: dict[str, int] | None = None,
    ):
        """``transcriber(pcm) -> Decoded``; ``diarization`` maps the sha256 of an audio file to its turns."""
        self.api_key = api_key
        self.transcriber = transcriber
        self.diarization = diarization or {}
        self.speaker_numbers = speaker_numbers
        self.requests: list[RecordedRequest] = []
        self.responses: list[dict] = []  # every successful answer's JSON, in order
        self._canned: list[Canned] = []
        self._decoded: dict[str, Decoded] = {}
        self._lock = threading.Lock()
        self._stalling = False
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- life cycle --

    def start(self) -> FakeDeepgram:
        fake = self

        class Handler(_Handler):
            owner = fake

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        threading.Thread(target=server.serve_forever, name="fake-deepgram", daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDeepgram:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- switches --

    def respond_next(self, status: int, body: dict | bytes | None = None, *, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next ``times`` authorised requests get this answer (default body: Deepgram's for the status)."""
        if body is None and status in ERROR_BODIES:
            code, message = ERROR_BODIES[status]
            body = {"err_code": code, "err_msg": message}
        with self._lock:
            self._canned.extend(Canned(status, body, dict(headers or {})) for _ in range(times))

    def stall(self) -> None:
        """Hold every answer (after the body is read) until `release`."""
        self._released.clear()
        self._stalling = True

    def release(self) -> None:
        self._stalling = False
        self._released.set()

    def reset(self) -> None:
        with self._lock:
            self._canned.clear()
            self.requests.clear()
            self.responses.clear()
        self.release()

    # -- the API --

    def _take_canned(self) -> Canned | None:
        with self._lock:
            return self._canned.pop(0) if self._canned else None

    def decoded(self, data: bytes) -> Decoded:
        key = sha256(data)
        if key not in self._decoded:
            self._decoded[key] = self.transcriber(audio.decode(data))
        return self._decoded[key]

    def listen(self, query: dict[str, list[str]], body: bytes) -> tuple[int, dict]:
        """The status and JSON Deepgram would answer an authorised request with."""
        request_id = str(uuid.uuid4())

        def error(status: int, message: str, code: str = "Bad Request") -> tuple[int, dict]:
            return status, {"err_code": code, "err_msg": message, "request_id": request_id}

        params = {name: values[-1] for name, values in query.items()}
        for name in BOOLEAN_PARAMS & params.keys():
            if params[name] not in ("true", "false"):
                return error(400, f"Invalid query string: invalid value for '{name}': expected a boolean")
        flag = {name: params.get(name) == "true" for name in BOOLEAN_PARAMS}
        model = params.get("model", "base-general")
        language = params.get("language")
        if model not in KNOWN_MODELS or (language is not None and not re.fullmatch(r"en(-[A-Za-z]{2})?", language)):
            return error(400, "No such model/language/tier combination found.")
        try:
            utt_split = float(params.get("utt_split", "0.8"))
        except ValueError:
            return error(400, "Invalid query string: invalid value for 'utt_split'")
        if not body:
            return error(400, "Bad Request: failed to process audio: corrupt or unsupported data")
        try:
            decoded = self.decoded(body)
        except InvalidArgument:
            return error(400, "Bad Request: failed to process audio: corrupt or unsupported data")

        punctuated = flag["punctuate"] or flag["smart_format"]
        speakers = self._speakers(sha256(body), decoded.words) if flag["diarize"] else None
        words = []
        for i, w in enumerate(decoded.words):
            item = {"word": _bare(w.text), "start": w.start, "end": w.end, "confidence": w.probability}
            if punctuated:
                item["punctuated_word"] = w.text
            if speakers is not None:
                item["speaker"] = speakers[i]
                item["speaker_confidence"] = 0.9
            words.append(item)
        shown = [w.get("punctuated_word", w["word"]) for w in words]
        alternative: dict = {
            "transcript": " ".join(shown),
            "confidence": round(sum(w.probability for w in decoded.words) / len(words), 4) if words else 0.0,
            "words": words,
        }
        if flag["paragraphs"]:
            alternative["paragraphs"] = _paragraphs(words, speakers is not None)
        channel: dict = {"alternatives": [alternative]}
        if flag["detect_language"] and language is None:
            channel["detected_language"] = decoded.language
            channel["language_confidence"] = round(decoded.language_probability, 4)
        results: dict = {"channels": [channel]}
        if flag["utterances"]:
            results["utterances"] = _utterances(words, utt_split, speakers is not None)
        metadata = {
            "transaction_key": "deprecated",
            "request_id": request_id,
            "sha256": sha256(body),
            "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "duration": round(decoded.duration, 3),
            "channels": 1,
            "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: {"name": f"general-{model}", "version": "2026-01-01.0", "arch": model}},
        }
        return 200, {"metadata": metadata, "results": results}

    def _speakers(self, key: str, words: tuple[WhisperWord, ...]) -> list[int]:
        turns = self.diarization.get(key)
        if not turns:
            return [0] * len(words)
        numbers = self.speaker_numbers or {name: i for i, name in enumerate(sorted({t[2] for t in turns}))}
        result = []
        for w in words:
            middle = (w.start + w.end) / 2
            holding = [t for t in turns if t[0] <= middle <= t[1]]
            if holding:
                turn = min(holding, key=lambda t: t[1] - t[0])
            else:
                turn = min(turns, key=lambda t: min(abs(t[0] - middle), abs(t[1] - middle)))
            result.append(numbers[turn[2]])
        return result


def _bare(text: str) -> str:
    return re.sub(r"[^\w']", "", text).lower()


def _utterances(words: list[dict], utt_split: float, diarized: bool) -> list[dict]:
    groups: list[list[dict]] = []
    for w in words:
        if groups and w["start"] - groups[-1][-1]["end"] < utt_split and w.get("speaker") == groups[-1][-1].get("speaker"):
            groups[-1].append(w)
        else:
            groups.append([w])
    utterances = []
    for group in groups:
        item = {
            "start": group[0]["start"],
            "end": group[-1]["end"],
            "confidence": round(sum(w["confidence"] for w in group) / len(group), 4),
            "channel": 0,
            "transcript": " ".join(w.get("punctuated_word", w["word"]) for w in group),
            "words": group,
            "id": str(uuid.uuid4()),
        }
        if diarized:
            item["speaker"] = group[0]["speaker"]
        utterances.append(item)
    return utterances


def _paragraphs(words: list[dict], diarized: bool) -> dict:
    sentences: list[list[dict]] = [[]]
    for w in words:
        if sentences[-1] and (w.get("speaker") != sentences[-1][-1].get("speaker")):
            sentences.append([])
        sentences[-1].append(w)
        if w.get("punctuated_word", "").endswith((".", "?", "!")):
            sentences.append([])
    sentences = [s for s in sentences if s]
    paragraphs: list[list[list[dict]]] = []
    for s in sentences:
        last = paragraphs[-1][-1][-1] if paragraphs else None
        if last is not None and s[0].get("speaker") == last.get("speaker") and s[0]["start"] - last["end"] <= 1.5:
            paragraphs[-1].append(s)
        else:
            paragraphs.append([s])
    items, texts = [], []
    for p in paragraphs:
        item = {
            "sentences": [
                {"text": " ".join(w.get("punctuated_word", w["word"]) for w in s), "start": s[0]["start"], "end": s[-1]["end"]} for s in p
            ],
            "num_words": sum(len(s) for s in p),
            "start": p[0][0]["start"],
            "end": p[-1][-1]["end"],
        }
        if diarized:
            item["speaker"] = p[0][0]["speaker"]
        items.append(item)
        text = " ".join(s["text"] for s in item["sentences"])
        texts.append(f"Speaker {item['speaker']}: {text}" if diarized else text)
    return {"transcript": "\n" + "\n\n".join(texts) + ("\n" if texts else ""), "paragraphs": items}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for kept-alive or stalled connections

    def handle_error(self, request, client_address) -> None:  # a client that gave up on a stalled answer: not news
        pass


class _Handler(BaseHTTPRequestHandler):
    owner: FakeDeepgram
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        authorization = self.headers.get("Authorization", "")
        authorized = authorization == f"Token {fake.api_key}"
        headers = {k: ("Token [masked]" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        with fake._lock:
            fake.requests.append(
                RecordedRequest("POST", url.path, parse_qs(url.query), headers, authorized, len(body), self.headers.get("Content-Type"))
            )
        if url.path != "/v1/listen":
            return self._json(404, {"err_code": "NOT_FOUND", "err_msg": "Not found.", "request_id": str(uuid.uuid4())})
        if not authorized:
            code, message = ERROR_BODIES[401]
            return self._json(401, {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})
        if fake._stalling:
            fake._released.wait(timeout=120)
        if canned := fake._take_canned():
            if isinstance(canned.body, dict):
                return self._json(canned.status, {**canned.body, "request_id": str(uuid.uuid4())}, canned.headers)
            return self._send(canned.status, canned.body or b"", "text/plain", canned.headers)
        status, answer = fake.listen(parse_qs(url.query), body)
        if status == 200:
            with fake._lock:
                fake.responses.append(answer)
        self._json(status, answer, {"dg-request-id": answer.get("request_id") or answer.get("metadata", {}).get("request_id", "")})

    def do_GET(self) -> None:
        self._json(405, {"err_code": "METHOD_NOT_ALLOWED", "err_msg": "Use POST."})

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers or {})

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
