"""One transcription job: download -> (transcribe || diarize) -> merged stream.

Speaks the browser protocol of the app this system replaces (message types
``status``, ``download_progress``, ``cached_file``, ``capture_ready``,
``transcription_status``, ``transcription_progress``, ``transcription_chunk``,
``complete``, ``error``) and adds, without breaking clients that ignore them:

* ``id`` on every ``transcription_chunk``;
* ``metadata`` (title, duration, ... of the media) after the download;
* ``diarization_progress`` while speakers are being found;
* ``queue_position {position, estimated_wait_seconds}``: the ASR is busy and
  this job waits for a decoding slot (1 = next); sent again as it moves up;
* ``warning {code, message}``: the job goes on but something is missing
  (``diarization_failed``: the diarizer failed or timed out, so the transcript
  comes without speakers; a ``status`` with the same text follows for older clients;
  ``unknown_fields``: the request named fields this gateway does not know, which were ignored);
* ``speaker_update``: diarization finishes after (some) segments were already
  sent without a speaker, so this message names the speaker of each of them
  by id. Chunks sent after it carry their speaker inline. With word
  timestamps, each word takes the speaker who talks most during it, and a
  segment whose speaker changes mid-way is split at the word boundary: the
  first part keeps the segment's id (its entry then carries the new
  ``start``, ``end``, ``text`` and ``words``), later parts get ids
  ``"<id>.1"``, ``"<id>.2"``, ... and a ``split_from`` naming the segment.

Transcription and diarization run at the same time; segments are forwarded
the moment the ASR service yields them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from transcription import errors
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.gateway import fanout
from transcription.gateway.exports import Transcript
from transcription.gateway.security import safe_filename
from transcription.speakers import MAX_SPEAKERS, SpeakerTimeline, split_by_speaker
from transcription.v1 import asr_pb2, diarizer_pb2

log = logging.getLogger(__name__)

Send = Callable[[dict], Awaitable[None]]

BACKENDS = {
    "faster-whisper": asr_pb2.BACKEND_FASTER_WHISPER,
    "openai-whisper": asr_pb2.BACKEND_OPENAI_WHISPER,
    "deepgram": asr_pb2.BACKEND_DEEPGRAM,
}


BACKEND_NAMES = {value: name for name, value in BACKENDS.items()}

# Calls to the ASR before a job fails: a replica lost mid-way is replaced by another.
ASR_ATTEMPTS = 3

CONTENT_ID = re.compile(r"[0-9a-f]{64}")
EXPORT_FORMATS = ("srt", "vtt", "txt", "json", "tsv")


# The request's fields: the JSON types each may have, and how to say so. null means "not given".
_STRING, _BOOLEAN = ((str,), "a string"), ((bool,), "true or false")
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **dict.fromkeys(("url", "content_id", "filename", "model", "language", "backend", "task", "initial_prompt", "hotwords"), _STRING),
    **dict.fromkeys(("use_faster_whisper", "enable_diarization", "word_timestamps"), _BOOLEAN),
    # form inputs may send counts as numeric strings
    **dict.fromkeys(("num_speakers", "min_speakers", "max_speakers"), ((int, str), "a whole number")),
    "temperature": ((int, float, list), "a number or a list of numbers"),
    "vad_parameters": ((dict,), "an object"),
    "type": _STRING,  # the page and older clients may name the message
}
_JSON_KINDS = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}


def _check_types(data: dict) -> None:
    for name, (allowed, described) in _FIELD_TYPES.items():
        value = data.get(name)
        # bool is an int in Python, never in the protocol
        if value is not None and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            raise errors.InvalidArgument(f"{name} must be {described}, not {_JSON_KINDS.get(type(value), type(value).__name__)}")


def unknown_fields(data: dict) -> list[str]:
    """Fields of a request this gateway does not know: ignored (newer clients), but the client is told."""
    return sorted(name[:40] for name in data if name not in _FIELD_TYPES)[:20]


@dataclass
class JobRequest:
    url: str = ""
    content_id: str = ""  # an uploaded file (POST /api/upload) instead of a URL
    filename: str = ""
    model: str = ""
    language: str | None = None
    backend: str = "faster-whisper"
    enable_diarization: bool = False
    num_speakers: int = 0
    min_speakers: int = 0
    max_speakers: int = 0
    word_timestamps: bool = False
    task: str = "transcribe"
    # decoding options beyond the reference protocol (faster-whisper; see asr.proto)
    initial_prompt: str = ""
    hotwords: str = ""
    temperatures: tuple[float, ...] = ()
    vad_parameters: dict | None = None

    @classmethod
    def from_message(cls, data: object) -> JobRequest:
        """Validate a client's request message; raises `InvalidArgument`."""
        if not isinstance(data, dict):
            raise errors.InvalidArgument("the request must be a JSON object")
        _check_types(data)
        url, content_id = data.get("url"), data.get("content_id")
        if isinstance(content_id, str) and content_id:
            if not CONTENT_ID.fullmatch(content_id):
                raise errors.InvalidArgument("content_id must be the sha256 an upload returned")
            url = ""
        elif not url or not url.strip():  # (a string or None: _check_types)
            raise errors.InvalidArgument("URL is required")
        else:
            content_id = ""
        # The reference app's switch: use_faster_whisper=false means openai-whisper; "backend" names any engine.
        backend = data.get("backend") or ("openai-whisper" if data.get("use_faster_whisper") is False else "faster-whisper")
        if backend not in BACKENDS:
            raise errors.InvalidArgument(f"unknown backend '{backend}' (choose one of {', '.join(BACKENDS)})")
        task = data.get("task") or "transcribe"
        if task not in ("transcribe", "translate"):
            raise errors.InvalidArgument("task must be 'transcribe' or 'translate'")
        try:
            counts = {k: int(data.get(k) or 0) for k in ("num_speakers", "min_speakers", "max_speakers")}
        except (TypeError, ValueError):
            raise errors.InvalidArgument("speaker counts must be whole numbers") from None
        if any(not 0 <= v <= MAX_SPEAKERS for v in counts.values()):
            raise errors.InvalidArgument(f"speaker counts must be between 0 and {MAX_SPEAKERS}")
        if counts["min_speakers"] and counts["max_speakers"] and counts["min_speakers"] > counts["max_speakers"]:
            raise errors.InvalidArgument("min_speakers cannot be larger than max_speakers")
        language = data.get("language")
        temperature = data.get("temperature")
        temperatures = temperature if isinstance(temperature, list) else [] if temperature is None else [temperature]
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in temperatures):
            raise errors.InvalidArgument("temperature must be a number or a list of numbers")
        vad_parameters = data.get("vad_parameters")
        if vad_parameters is not None:
            names = set(asr_pb2.VadParameters.DESCRIPTOR.fields_by_name)
            if not set(vad_parameters) <= names:  # (an object: _check_types)
                raise errors.InvalidArgument(f"vad_parameters must be an object with some of {', '.join(sorted(names))}")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in vad_parameters.values()):
                raise errors.InvalidArgument("vad_parameters values must be non-negative numbers")
        return cls(
            url=url.strip(),
            content_id=content_id,
            filename=safe_filename(str(data.get("filename") or "")),  # shown to the client and named in exports
            model=str(data.get("model") or ""),
            language=str(language) if language else None,
            backend=backend,
            enable_diarization=bool(data.get("enable_diarization")),
            word_timestamps=bool(data.get("word_timestamps")),
            task=task,
            initial_prompt=str(data.get("initial_prompt") or "")[:2000],
            hotwords=str(data.get("hotwords") or "")[:500],
            temperatures=tuple(float(t) for t in temperatures),
            vad_parameters=_vad_fields(vad_parameters) if vad_parameters else None,
            **counts,
        )


def segment_json(seg: asr_pb2.Segment) -> dict:
    """A segment as the client gets it in ``transcription_chunk`` (and as exports read it)."""
    chunk = {
        "type": "transcription_chunk",
        "id": seg.index,
        "text": seg.text,
        "start": round(seg.start, 3),
        "end": round(seg.end, 3),
        "speaker": seg.speaker if seg.HasField("speaker") else None,  # engines that diarize themselves
    }
    if seg.words:
        chunk["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "probability": round(w.probability, 3)} for w in seg.words
        ]
    return chunk


async def retry_unreachable(call: Callable[[], AsyncIterator], attempts: int = 3) -> AsyncIterator:
    """A stream, called again (after a short pause) while its service cannot be reached and nothing has arrived.

    A service restarting or a replica going away must not fail a job that has
    not started; once an event has been passed on, a failure is the job's.
    """
    for attempt in range(1, attempts + 1):
        started = False
        try:
            async for event in call():
                started = True
                yield event
            return
        except errors.ServiceUnreachable:
            if started or attempt == attempts:
                raise
            log.warning("service unreachable; calling again (%d of %d)", attempt + 1, attempts)
            await asyncio.sleep(0.5 * attempt)


async def reachable(client: AsrClient | DiarizerClient | DownloaderClient, timeout: float | None) -> None:
    """Return once ``client``'s channel is connected, or has failed to (then the call itself fails at once, as before).

    A service that accepts the connection but never answers it (hung, or a port
    that swallows traffic) keeps the channel connecting for gRPC's own ~20 s,
    after which the call fails with a message that names no service: this gives
    up after ``timeout`` instead, as `errors.ServiceUnreachable` (retried like a
    refused connection) naming the service.
    """
    channel = client.channel
    state = channel.get_state(try_to_connect=True)
    try:
        async with asyncio.timeout(timeout):
            while state in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING):
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    except TimeoutError:
        log.warning("the %s service at %s did not answer a connection within %g s", client.service_name, client.address, timeout)
        raise errors.ServiceUnreachable(f"the {client.service_name} service did not answer within {timeout:g} s") from None


def _vad_fields(values: dict) -> dict:
    """VadParameters fields with the proto's types (whole milliseconds, float thresholds)."""
    fields = asr_pb2.VadParameters.DESCRIPTOR.fields_by_name
    return {name: float(v) if fields[name].cpp_type == fields[name].CPPTYPE_FLOAT else int(v) for name, v in values.items()}


@dataclass
class Clients:
    downloader: DownloaderClient
    asr: AsrClient
    diarizer: DiarizerClient


@dataclass(frozen=True)
class Fanout:
    """When and how a long file is cut into pieces transcribed at once (fanout.py); min_seconds 0 = never."""

    min_seconds: float = 0.0
    piece_seconds: float = 300.0
    parallel: int = 4


class Job:
    def __init__(
        self,
        request: JobRequest,
        clients: Clients,
        send: Send,
        progress_interval: float = 0.5,
        diarization_timeout: float | None = None,
        connect_timeout: float | None = None,
        fanout: Fanout = Fanout(),
        link: Callable[[str], str] = lambda path: path,
    ):
        self.request = request
        self.fanout = fanout
        self.link = link  # signs the audio and export links when the gateway has a token
        self.diarization_timeout = diarization_timeout or None
        self.connect_timeout = connect_timeout or None
        self.clients = clients
        self._send = send
        self._send_lock = asyncio.Lock()
        self.progress_interval = progress_interval
        self._last_progress = 0.0
        self.segments: list[dict] = []  # as sent: id, start, end, text, speaker (and words)
        self.timeline: SpeakerTimeline | None = None  # set when diarization completes
        self.num_speakers = 0
        self.language = ""
        self.duration = 0.0
        self.title = request.filename
        self.job_id = uuid.uuid4().hex
        self.content_id = ""

    async def _reaching(self, client: AsrClient | DiarizerClient | DownloaderClient, stream: AsyncIterator) -> AsyncIterator:
        """A call's ``stream`` (not started yet), started once ``client``'s service has answered the connection."""
        async with contextlib.aclosing(stream):
            await reachable(client, self.connect_timeout)
            async for event in stream:
                yield event

    async def send(self, message: dict) -> None:
        async with self._send_lock:  # two tasks (ASR, diarizer) share the socket
            await self._send(message)

    async def run(self) -> None:
        began = time.monotonic()
        content_id = self.content_id = await self._uploaded() if self.request.content_id else await self._download()
        await self.send({"type": "status", "message": "Transcribing...", "progress": 30})
        transcribing = asyncio.create_task(self._transcribe(content_id))
        # Deepgram diarizes in the same call: its segments carry their speakers, no diarizer needed
        local_speakers = self.request.enable_diarization and self.request.backend != "deepgram"
        diarizing = asyncio.create_task(self._diarize(content_id)) if local_speakers else None
        try:
            await transcribing
            if diarizing is not None:
                await diarizing
        finally:
            for task in (transcribing, diarizing):
                if task is not None and not task.done():
                    task.cancel()
        await self.send(
            {
                "type": "complete",
                "message": "Transcription completed successfully",
                "language": self.language,
                "duration": self.duration,
                "segments": len(self.segments),
                "num_speakers": self._num_speakers(),
                "processing_seconds": round(time.monotonic() - began, 3),
                # extension: where the finished transcript and its audio can be fetched
                "job_id": self.job_id,
                "audio_url": self.link(f"/api/audio/{content_id}.wav"),
                "exports": {fmt: self.link(f"/api/transcripts/{self.job_id}.{fmt}") for fmt in EXPORT_FORMATS},
            }
        )

    def transcript(self) -> Transcript:
        """The finished transcript, as exported (/api/transcripts/<job_id>.<format>)."""
        return Transcript(
            segments=self.segments, language=self.language, duration=self.duration, title=self.title, num_speakers=self._num_speakers()
        )

    def _num_speakers(self) -> int | None:
        if self.timeline is not None:
            return self.num_speakers
        inline = {s["speaker"] for s in self.segments if s.get("speaker")}  # speakers the ASR engine found itself
        return len(inline) if inline else None

    # -- download ----------------------------------------------------------

    async def _uploaded(self) -> str:
        """An uploaded file is already in the store: announce it as a download would have."""
        content_id = self.request.content_id
        await reachable(self.clients.downloader, self.connect_timeout)
        self.duration = await self.clients.downloader.canonical_size(content_id) / 32_000  # canonical: 16 kHz, 2 bytes a sample
        await self.send({"type": "cached_file", "message": "Using uploaded audio file", "content_id": content_id})
        await self.send(
            {"type": "metadata", "title": self.title, "duration": self.duration, "thumbnail": "", "uploader": "", "webpage_url": ""}
        )
        await self.send(
            {
                "type": "capture_ready",
                "filename": self.title or content_id,
                "content_id": content_id,
                "audio_url": self.link(f"/api/audio/{content_id}.wav"),
            }
        )
        return content_id

    async def _download(self) -> str:
        await self.send({"type": "status", "message": "Downloading audio...", "progress": 5})
        content_id = None
        # read the stream to its end, so the downloader finishes the call (status OK) rather than seeing it cancelled
        downloader = self.clients.downloader
        async for event in retry_unreachable(lambda: self._reaching(downloader, downloader.fetch(self.request.url))):
            kind = event.WhichOneof("event")
            if kind == "progress":
                p = event.progress
                await self.send(
                    {
                        "type": "download_progress",
                        "downloaded": p.bytes_done,
                        "total": p.bytes_total or None,
                        "percent": p.percent if p.percent >= 0 else None,
                    }
                )
            elif kind == "cache_hit":
                await self.send({"type": "cached_file", "message": "Using cached audio file", "content_id": event.cache_hit.content_id})
            elif kind == "metadata":
                m = event.metadata
                self.title = m.title
                await self.send(
                    {
                        "type": "metadata",
                        "title": m.title,
                        "duration": m.duration_seconds,
                        "thumbnail": m.thumbnail_url,
                        "uploader": m.uploader,
                        "webpage_url": m.webpage_url,
                    }
                )
            elif kind == "ready":
                ready = event.ready
                self.duration = ready.duration_seconds
                await self.send(
                    {
                        "type": "capture_ready",
                        "filename": f"{ready.content_id}.{ready.format}",
                        "content_id": ready.content_id,
                        "audio_url": self.link(f"/api/audio/{ready.content_id}.wav"),
                    }
                )
                content_id = ready.content_id
        if content_id is None:
            raise errors.Unavailable("the downloader ended without delivering audio")
        return content_id

    # -- transcription -----------------------------------------------------

    def _asr_options(self) -> asr_pb2.TranscribeOptions:
        r = self.request
        return asr_pb2.TranscribeOptions(
            backend=BACKENDS[r.backend],
            model=r.model,
            language=r.language or "",
            task=asr_pb2.TASK_TRANSLATE if r.task == "translate" else asr_pb2.TASK_TRANSCRIBE,
            word_timestamps=r.word_timestamps,
            diarize=r.enable_diarization and r.backend == "deepgram",
            initial_prompt=r.initial_prompt,
            hotwords=r.hotwords,
            temperatures=r.temperatures,
            vad=asr_pb2.VadParameters(**r.vad_parameters) if r.vad_parameters else None,
        )

    async def _transcribe(self, content_id: str) -> None:
        await self.send({"type": "transcription_status", "status": "started"})
        cuts = await self._cuts(content_id)
        if not cuts:
            async for kind, event in self._asr_events(content_id):
                await self._on_asr_event(kind, event)
            return
        await self._transcribe_pieces(content_id, fanout.pieces(cuts))

    async def _asr_events(
        self, content_id: str, start: float = 0.0, end: float = 0.0, language: str = "", *, asr: AsrClient | None = None, skip: int = 0
    ) -> AsyncIterator[tuple[str, asr_pb2.TranscribeEvent]]:
        """One ASR call's events (kind, event); if the replica dies mid-way, go on with another.

        A replica lost to UNAVAILABLE (killed, restarted, unreachable) is replaced
        by calling again, which the channel sends to a live replica. The call
        restarts from the beginning of the audio (or piece); segments already
        passed on (same audio, model and options decode to the same segments) are
        not passed on again, so the client sees one transcript with nothing doubled.
        With ``asr``, one replica's own client, there is no other to call: its loss
        is raised at once, and the caller, who knows the others, takes it from
        there, calling again with ``skip``, the segments it has had.
        """
        options = self._asr_options()
        if language:
            options.language = language
        delivered, told_started = skip, False
        attempts = 1 if asr is not None else ASR_ATTEMPTS
        asr = asr or self.clients.asr
        for attempt in range(1, attempts + 1):
            seen = 0
            try:
                async for event in self._reaching(asr, asr.transcribe(content_id, options, start_seconds=start, end_seconds=end)):
                    kind = event.WhichOneof("event")
                    if kind == "segment":
                        seen += 1
                        if seen <= delivered:
                            continue  # replayed by the replica that took over
                        delivered += 1
                    elif kind == "started":
                        if told_started:
                            continue
                        told_started = True
                    yield kind, event
                return
            except errors.Unavailable as exc:
                if attempt == attempts:
                    raise
                log.warning("ASR replica lost after %d segments (%s); retrying on another", delivered, exc.message)
                await self.send({"type": "status", "message": "Speech recognition moved to another server; continuing"})
                await asyncio.sleep(0.2 * attempt)

    # -- long files: pieces at once on every replica ----------------------------

    async def _cuts(self, content_id: str) -> list[float]:
        """Where to cut this file for fan-out (in pauses); [] to transcribe it whole."""
        f = self.fanout
        if not f.min_seconds or self.duration <= f.min_seconds or self.request.backend == "deepgram":
            return []
        cuts = []
        for ideal in fanout.ideal_cuts(self.duration, f.piece_seconds):
            start = max(0.0, ideal - fanout.SEARCH_SECONDS)
            window = b"".join(
                [
                    c.data
                    async for c in self.clients.downloader.iter_audio(
                        content_id, canonical=True, start_seconds=start, end_seconds=ideal + fanout.SEARCH_SECONDS
                    )
                ]
            )
            cuts.append(fanout.quietest_moment(window, start))
        return cuts

    async def _transcribe_pieces(self, content_id: str, pieces: list[tuple[float, float]]) -> None:
        """Every piece at once on the replicas, relayed in order: the first live, the others as their turn comes.

        Each replica behind ASR_ADDR (each address, or each record of a dns:///
        name) has ``parallel / replicas`` hands, and a free hand takes the next
        piece: a piece that decodes slowly holds up its own replica only, where
        dealing pieces out round robin up front left the others idle. The first
        piece starts alone until it has detected the language, which the others
        are then given, so one file has one language. A replica lost mid-piece
        hands the piece back; another decodes it again, and what was relayed
        already is not relayed twice.
        """
        outboxes: list[asyncio.Queue] = [asyncio.Queue() for _ in pieces]
        done_seconds = [0.0] * len(pieces)
        received = [0] * len(pieces)  # segments of each piece the ASR has sent so far, on any replica
        started: set[int] = set()
        waiting: asyncio.Queue[int] = asyncio.Queue()
        language = asyncio.get_running_loop().create_future()

        def release_the_rest(detected: str) -> None:
            language.set_result(detected)
            for number in range(1, len(pieces)):
                waiting.put_nowait(number)

        waiting.put_nowait(0)
        if self.request.language:
            release_the_rest(self.request.language)

        async def run(number: int, asr: AsrClient) -> None:
            start, end = pieces[number]
            lead_in = min(start, fanout.LEAD_IN_SECONDS)  # decoded, then dropped: the previous piece's
            again = number in started  # taken over from a lost replica
            started.add(number)
            # one replica: the balanced channel's own retries (a replica restarting on its address); several: a lost
            # replica's piece goes back to the others
            own = None if asr is self.clients.asr else asr
            events = self._asr_events(content_id, start - lead_in, end, language.result() if number else "", asr=own, skip=received[number])
            async for kind, event in events:
                if kind == "started" and not language.done():
                    release_the_rest(event.started.language)
                if kind == "progress":  # all pieces' progress counts, whichever is being relayed
                    done_seconds[number] = max(0.0, event.progress.processed_seconds - lead_in)
                    await self._progress(sum(done_seconds), self.duration)
                    continue
                if kind == "segment":
                    received[number] += 1
                    if (event.segment.start + event.segment.end) / 2 < start:
                        continue
                elif again and kind in ("started", "queued"):
                    continue  # said once already, by the replica that was lost
                await outboxes[number].put((kind, event))
            await outboxes[number].put(None)

        async with self.clients.asr.every_replica() as replicas:
            hands = [asr for asr, count in zip(replicas, await self._hands(replicas)) for _ in range(count)]
            alive = len(hands)

            async def hand(asr: AsrClient) -> None:
                nonlocal alive
                while True:
                    number = await waiting.get()
                    try:
                        await run(number, asr)
                    except errors.Unavailable as exc:
                        waiting.put_nowait(number)  # another replica takes it over
                        alive -= 1
                        if not alive:
                            raise
                        log.warning("ASR replica %s lost on piece %d (%s); another takes it over", asr.address, number, exc.message)
                        await self.send({"type": "status", "message": "Speech recognition moved to another server; continuing"})
                        return

            tasks = [asyncio.create_task(hand(asr)) for asr in hands]
            try:
                await self._relay_in_order(outboxes, set(tasks))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _hands(self, replicas: list[AsrClient]) -> list[int]:
        """Pieces each replica gets at once: as many as it decodes at once (a piece more would wait in its
        queue while another replica might be idle), GATEWAY_FANOUT_PARALLEL in all at most."""

        async def capacity(asr: AsrClient) -> int:
            try:
                async with asyncio.timeout(self.connect_timeout or 10):
                    return (await asr.device_info()).max_concurrent or 1
            except (TimeoutError, errors.ServiceError):
                return 1  # a replica that does not answer gets one hand, which finds out

        capacities = await asyncio.gather(*(capacity(asr) for asr in replicas))
        share, spare = divmod(max(1, self.fanout.parallel), len(replicas))
        return [min(c, share + (number < spare)) for number, c in enumerate(capacities)]

    async def _relay_in_order(self, outboxes: list[asyncio.Queue], running: set[asyncio.Task]) -> None:
        """The pieces' events to the client, piece after piece; a failing task ends the job at once."""
        index, from_cache = 0, True
        for number, outbox in enumerate(outboxes):
            while True:
                getter = asyncio.ensure_future(outbox.get())
                while not getter.done():
                    done, _ = await asyncio.wait({getter, *running}, return_when=asyncio.FIRST_COMPLETED)
                    for task in done - {getter}:
                        running.discard(task)
                        if task.exception() is not None:
                            getter.cancel()
                            raise task.exception()
                item = getter.result()
                if item is None:
                    break
                kind, event = item
                if kind == "segment":
                    event.segment.index = index  # one numbering across pieces
                    index += 1
                elif kind == "started":
                    event.started.duration_seconds = self.duration  # the file's, not the piece's
                elif kind == "completed":
                    from_cache = from_cache and event.completed.from_cache
                if kind == "completed" or (number and kind in ("started", "queued")):
                    continue  # the first piece speaks for the file; one completion at the end
                await self._on_asr_event(kind, event)
        await self._progress(self.duration, self.duration, force=True)
        await self.send({"type": "transcription_status", "status": "completed", "from_cache": from_cache})

    async def _on_asr_event(self, kind: str, event: asr_pb2.TranscribeEvent) -> None:
        if kind == "started":
            self.language = event.started.language
            self.duration = event.started.duration_seconds or self.duration
            backend = BACKEND_NAMES.get(event.started.backend, "faster-whisper")
            await self.send({"type": "transcription_status", "status": "processing", "language": self.language, "backend": backend})
        elif kind == "progress":
            await self._progress(event.progress.processed_seconds, event.progress.total_seconds)
        elif kind == "queued":
            q = event.queued
            await self.send(
                {"type": "queue_position", "position": q.position, "estimated_wait_seconds": round(q.estimated_wait_seconds, 1)}
            )
        elif kind == "segment":
            await self._segment(event.segment)
        elif kind == "completed":
            await self._progress(event.completed.audio_seconds, event.completed.audio_seconds, force=True)
            await self.send({"type": "transcription_status", "status": "completed", "from_cache": event.completed.from_cache})

    async def _progress(self, done: float, total: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        percent = int(100 * done / total) if total else 0
        await self.send({"type": "transcription_progress", "progress": percent, "total_duration": total})

    async def _segment(self, seg: asr_pb2.Segment) -> None:
        chunk = segment_json(seg)
        parts = self._with_speakers(chunk) if self.timeline else [chunk]
        for part in parts:
            self.segments.append(part)
            await self.send(part)

    def _with_speakers(self, chunk: dict) -> list[dict]:
        """Label a chunk (per word when it has words); split it where the speaker changes."""
        words = chunk.get("words")
        if not words:
            chunk["speaker"] = self.timeline.speaker_for(chunk["start"], chunk["end"])
            return [chunk]
        speakers = [self.timeline.speaker_for(w["start"], w["end"]) for w in words]
        for word, speaker in zip(words, speakers):
            word["speaker"] = speaker
        parts = []
        for number, (first, last) in enumerate(split_by_speaker(speakers)):
            part_words = words[first:last]
            part = {
                **chunk,
                "id": chunk["id"] if number == 0 else f"{chunk['id']}.{number}",
                "start": part_words[0]["start"],
                "end": part_words[-1]["end"],
                "text": "".join(w["word"] for w in part_words).strip(),
                "words": part_words,
                "speaker": speakers[first],
            }
            if number:
                part["split_from"] = chunk["id"]
            parts.append(part)
        if len(parts) == 1:  # one speaker: keep the ASR's own text and times
            parts[0].update(text=chunk["text"], start=chunk["start"], end=chunk["end"])
        return parts

    # -- diarization -------------------------------------------------------

    async def _diarize(self, content_id: str) -> None:
        r = self.request
        options = diarizer_pb2.DiarizeOptions(num_speakers=r.num_speakers, min_speakers=r.min_speakers, max_speakers=r.max_speakers)
        turns: list[diarizer_pb2.SpeakerTurn] = []
        try:
            async with asyncio.timeout(self.diarization_timeout):
                diarizer = self.clients.diarizer
                async for event in retry_unreachable(lambda: self._reaching(diarizer, diarizer.diarize(content_id, options))):
                    kind = event.WhichOneof("event")
                    if kind == "progress":
                        await self.send(
                            {"type": "diarization_progress", "stage": event.progress.stage, "progress": int(event.progress.percent)}
                        )
                    elif kind == "turn":
                        turns.append(event.turn)
                    elif kind == "completed":
                        self.num_speakers = event.completed.num_speakers
        except (errors.ServiceError, TimeoutError) as exc:
            # The transcript is still worth having: say plainly that speakers are missing, and carry on.
            reason = exc.message if isinstance(exc, errors.ServiceError) else f"no result within {self.diarization_timeout:.0f} s"
            log.warning("diarization failed: %s", reason)
            message = f"Speaker identification failed: {reason}; the transcript has no speakers"
            await self.send({"type": "warning", "code": "diarization_failed", "message": message})
            await self.send({"type": "status", "message": message})  # what clients that predate "warning" show
            return
        self.timeline = SpeakerTimeline(turns)
        sent, self.segments = self.segments, []
        updates = []
        for chunk in sent:
            parts = self._with_speakers(chunk)
            self.segments.extend(parts)
            for part in parts:
                entry = {"id": part["id"], "speaker": part["speaker"]}
                if len(parts) > 1:
                    entry.update({k: part[k] for k in ("start", "end", "text", "words") if k in part})
                    if "split_from" in part:
                        entry["split_from"] = part["split_from"]
                updates.append(entry)
        await self.send(
            {
                "type": "speaker_update",
                "num_speakers": self.num_speakers,
                "segments": updates,
                "turns": [{"start": round(t.start, 3), "end": round(t.end, 3), "speaker": t.speaker} for t in turns],
                # one speaker at a time (overlaps go to the shorter turn): what the words were assigned from
                "exclusive_turns": [
                    {"start": round(t.start, 3), "end": round(t.end, 3), "speaker": t.speaker} for t in self.timeline.turns
                ],
            }
        )
