"""gRPC transport for the ASR service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict

from faster_whisper.tokenizer import _LANGUAGE_CODES

from transcription import audio, devices, metrics
from transcription.asr import deepgram_engine, engine, openai_engine
from transcription.asr.cache import TranscriptCache
from transcription.asr.deepgram_engine import DeepgramOptions
from transcription.asr.manager import ModelManager
from transcription.asr.models import FASTER_WHISPER, OPENAI_WHISPER, ModelCatalog, ModelEntry, WhisperLoader
from transcription.asr.settings import AsrSettings
from transcription.clients import DownloaderClient, resolve_audio
from transcription.errors import FailedPrecondition, InvalidArgument
from transcription.grpc_server import rpc, run_service
from transcription.threads import Admission, stream_from_thread
from transcription.tls import client_tls
from transcription.v1 import asr_pb2, asr_pb2_grpc, common_pb2

logger = logging.getLogger(__name__)

MAX_BEAM_SIZE = 20
# Whisper's 100 language codes (faster-whisper and openai-whisper share them), checked
# before any audio moves; Deepgram takes BCP-47 tags ("en-US") and "multi".
WHISPER_LANGUAGES = frozenset(_LANGUAGE_CODES)
LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*|multi")
MAX_BATCH_SIZE = 64


def _event_pb(event: engine.Event, backend: int) -> asr_pb2.TranscribeEvent:
    if isinstance(event, engine.Segment):
        fields = asdict(event)
        fields["words"] = [asr_pb2.Word(**w) for w in fields["words"]]
        return asr_pb2.TranscribeEvent(segment=asr_pb2.Segment(**fields))
    if isinstance(event, engine.Progress):
        return asr_pb2.TranscribeEvent(progress=asr_pb2.TranscriptionProgress(**asdict(event)))
    if isinstance(event, engine.Started):
        return asr_pb2.TranscribeEvent(started=asr_pb2.TranscriptionStarted(**asdict(event), backend=backend))
    if isinstance(event, engine.Completed):
        return asr_pb2.TranscribeEvent(completed=asr_pb2.TranscriptionCompleted(**asdict(event)))
    raise TypeError(f"unknown event {event!r}")


def _vad_parameters(vad: asr_pb2.VadParameters) -> tuple[tuple[str, float], ...]:
    """The VAD settings a request changes (faster-whisper's VadOptions names), checked."""
    chosen = {field.name: value for field, value in vad.ListFields()}
    if not 0 <= chosen.get("threshold", 0.5) < 1:
        raise InvalidArgument("vad.threshold must be between 0 and 1")
    if "max_speech_duration_s" in chosen and chosen["max_speech_duration_s"] < 1:
        raise InvalidArgument("vad.max_speech_duration_s must be at least 1")
    return tuple(sorted((name, round(float(value), 4)) for name, value in chosen.items()))


def _replay(cached) -> list[engine.Event]:
    """A cached transcript as the events of a fresh one, marked as from the cache."""
    started, segments, completed = cached
    completed.from_cache = True
    return [started, *segments, engine.Progress(completed.audio_seconds, completed.audio_seconds), completed]


class AsrServicer(asr_pb2_grpc.AsrServicer):
    def __init__(
        self,
        settings: AsrSettings,
        catalog: ModelCatalog,
        models: ModelManager,
        cache: TranscriptCache,
        downloader: DownloaderClient,
        *,
        device: str,
        compute_type: str,
    ):
        self.settings = settings
        self.catalog = catalog
        self.models = models
        self.cache = cache
        self.downloader = downloader
        self.device = device
        self.compute_type = compute_type
        self.batch_size = settings.asr_batch_size if settings.asr_batch_size >= 0 else (16 if device.startswith("cuda") else 0)
        concurrent = settings.asr_max_concurrent or (4 if device.startswith("cuda") else 1)
        self.admission = Admission(concurrent, settings.asr_max_queue, "ASR service")

    def _options(self, request: asr_pb2.TranscribeRequest) -> engine.Options | DeepgramOptions:
        """The request's options, checked; every refusal here comes before any audio is read."""
        o = request.options
        language = o.language.strip().lower()
        language = None if language in ("", "auto") else language
        if language and not (LANGUAGE_TAG.fullmatch(language) if o.backend == asr_pb2.BACKEND_DEEPGRAM else language in WHISPER_LANGUAGES):
            raise InvalidArgument(f"unknown language '{language[:40]}': use a code such as en, he or de, or leave it empty to detect it")
        if o.backend == asr_pb2.BACKEND_DEEPGRAM:
            if self.settings.deepgram_api_key is None:
                raise FailedPrecondition("the deepgram backend needs DEEPGRAM_API_KEY set on the ASR service")
            if o.task == asr_pb2.TASK_TRANSLATE:
                raise InvalidArgument("the deepgram backend transcribes only; translation needs faster-whisper or openai-whisper")
            return DeepgramOptions(
                model=o.model.strip() or deepgram_engine.DEFAULT_MODEL,
                language=language,
                diarize=o.diarize,
                word_timestamps=o.word_timestamps,
            )
        openai = o.backend == asr_pb2.BACKEND_OPENAI_WHISPER
        if openai and importlib.util.find_spec("whisper") is None:
            raise FailedPrecondition("the openai-whisper backend needs the openai-whisper package on the ASR service")
        if o.beam_size > MAX_BEAM_SIZE:
            raise InvalidArgument(f"beam_size must be at most {MAX_BEAM_SIZE}")
        if o.batch_size > MAX_BATCH_SIZE:
            raise InvalidArgument(f"batch_size must be at most {MAX_BATCH_SIZE}")
        temperatures = tuple(round(t, 3) for t in o.temperatures)
        if len(temperatures) > 10 or any(not 0 <= t <= 1 for t in temperatures):
            raise InvalidArgument("temperatures: at most 10 values, each between 0 and 1")
        vad = _vad_parameters(o.vad)
        if openai and (o.hotwords or vad):
            raise InvalidArgument("hotwords and VAD parameters are faster-whisper options; openai-whisper has neither")
        return engine.Options(
            model=o.model.strip() or self.settings.asr_default_model,
            language=language,
            task="translate" if o.task == asr_pb2.TASK_TRANSLATE else "transcribe",
            # each engine's own default: beam 5 for faster-whisper, greedy for openai-whisper (beam search is slow in torch on CPU)
            beam_size=o.beam_size or (1 if openai else 5),
            vad_filter=o.vad_filter if o.HasField("vad_filter") else True,
            word_timestamps=o.word_timestamps,
            initial_prompt=o.initial_prompt or None,
            temperatures=temperatures,
            hotwords=o.hotwords.strip()[:500] or None,
            vad_parameters=vad,
            engine=OPENAI_WHISPER if openai else FASTER_WHISPER,
            batch_size=0 if openai else (o.batch_size if o.HasField("batch_size") else self.batch_size),
        )

    @rpc
    async def Transcribe(self, request: asr_pb2.TranscribeRequest, context):
        options = self._options(request)
        backend = request.options.backend or asr_pb2.BACKEND_FASTER_WHISPER
        local = isinstance(options, engine.Options)
        entry = self.catalog.resolve(options.model, options.engine) if local else None  # unknown models: refused before any audio moves
        if local and options.task == "translate" and not entry.multilingual:
            raise InvalidArgument(f"model {entry.name} is English-only and cannot translate; choose a multilingual model")
        start, end = request.start_seconds, request.end_seconds
        if start < 0 or end < 0 or (end and end <= start):
            raise InvalidArgument("the time range must satisfy 0 <= start_seconds < end_seconds")
        if (start or end) and (not local or request.audio.WhichOneof("source") != "content_id"):
            raise InvalidArgument("a time range needs stored audio (a content id) and faster-whisper or openai-whisper")
        content_id = request.audio.content_id
        if request.audio.WhichOneof("source") == "inline_audio" and request.audio.inline_audio:
            content_id = hashlib.sha256(request.audio.inline_audio).hexdigest()  # inline audio: keyed by its hash
        cache_key = f"{content_id}@{start:g}-{end:g}" if start or end else content_id
        if content_id and not request.skip_cache:  # a cache hit needs neither audio, model nor slot
            cached = await asyncio.to_thread(self.cache.get_transcript, cache_key, options)
            metrics.CACHE.labels("asr", "transcripts", "hit" if cached else "miss").inc()
            if cached:
                for event in _replay(cached):
                    yield _event_pb(event, backend)
                return

        events: list[engine.Event] = []
        async with self.admission.reserve(), self.models.acquire(entry) if local else _no_model() as model:  # loads hold no slot
            async for position in self.admission.queue_for_slot():
                queued = asr_pb2.QueuePosition(position=position, estimated_wait_seconds=self.admission.estimated_wait(position))
                yield asr_pb2.TranscribeEvent(queued=queued)
            async with self.admission.holding():
                # only now: a waiting job holds no audio
                if local:
                    pcm = await audio.resolve_samples(request.audio, self.downloader, start, end)  # canonical: no decoding here
                    run = openai_engine.transcribe if options.engine == OPENAI_WHISPER else engine.transcribe
                    length = pcm.size / audio.SAMPLE_RATE
                    stream = stream_from_thread(
                        lambda emit: run(model, pcm, options, functools.partial(_emit_shifted, emit, start, length))
                    )
                else:  # Deepgram gets the original file: smaller on the wire than PCM
                    stream = self._deepgram(await resolve_audio(request.audio, self.downloader), options)
                began, backend_name, segments_seen = time.monotonic(), asr_pb2.Backend.Name(backend), 0
                async for event in stream:
                    if isinstance(event, engine.Segment):
                        if not segments_seen:
                            metrics.FIRST_SEGMENT.labels(backend_name).observe(time.monotonic() - began)
                        segments_seen += 1
                        metrics.SEGMENTS.labels(backend_name).inc()
                    elif isinstance(event, engine.Completed):
                        metrics.AUDIO_SECONDS.labels("asr", backend_name).inc(event.audio_seconds)
                    if not isinstance(event, engine.Progress):
                        events.append(event)
                    yield _event_pb(event, backend)

        if not request.skip_cache and content_id:
            started, *segments, completed = events
            await asyncio.to_thread(self.cache.put_transcript, cache_key, options, started, segments, completed)

    async def _deepgram(self, data: bytes, options: DeepgramOptions) -> AsyncIterator[engine.Event]:
        """Deepgram answers once, with the whole transcript: its events, after the answer."""
        events: list[engine.Event] = []
        await deepgram_engine.transcribe_deepgram(
            data,
            None,
            options,
            api_key=self.settings.deepgram_api_key.get_secret_value(),
            base_url=self.settings.deepgram_base_url,
            emit=events.append,
            timeout=self.settings.deepgram_timeout_seconds,
        )
        for event in events:
            yield event

    def _model_info(self, entry: ModelEntry) -> asr_pb2.ModelInfo:
        return asr_pb2.ModelInfo(
            name=entry.name,
            backend=asr_pb2.BACKEND_OPENAI_WHISPER if entry.engine == OPENAI_WHISPER else asr_pb2.BACKEND_FASTER_WHISPER,
            available=True,
            loaded=self.models.is_loaded(entry),
            source=entry.source,
            multilingual=entry.multilingual,
            languages=entry.languages,
            size_bytes=entry.size_bytes,
            device=self.device,
            users=self.models.users(entry),
        )

    @rpc
    async def ListModels(self, request, context):
        engines = [FASTER_WHISPER] + ([OPENAI_WHISPER] if importlib.util.find_spec("whisper") else [])
        models = [self._model_info(entry) for name in engines for entry in await asyncio.to_thread(self.catalog.entries, name)]
        models.append(
            asr_pb2.ModelInfo(
                name=deepgram_engine.DEFAULT_MODEL,
                backend=asr_pb2.BACKEND_DEEPGRAM,
                available=self.settings.deepgram_api_key is not None,
                source="cloud",
                multilingual=True,
            )
        )
        return asr_pb2.ListModelsResponse(models=models, default_model=self.settings.asr_default_model)

    @rpc
    async def LoadModel(self, request: asr_pb2.ModelRequest, context):
        entry = self.catalog.resolve(request.name, _engine(request.backend))
        await self.models.load(entry)
        return self._model_info(entry)

    @rpc
    async def UnloadModel(self, request: asr_pb2.ModelRequest, context):
        entry = self.catalog.resolve(request.name, _engine(request.backend))
        await self.models.unload(entry)
        return self._model_info(entry)

    @rpc
    async def GetDeviceInfo(self, request, context):
        # the first CUDA query can take seconds: keep it off the event loop
        info = await asyncio.to_thread(devices.device_info, self.device, self.compute_type)
        info.max_concurrent = self.admission.max_active  # how many pieces of a long file a gateway sends it at once
        return info

    @rpc
    async def GetCacheStats(self, request, context):
        return common_pb2.CacheStats(**await asyncio.to_thread(self.cache.stats))

    @rpc
    async def ClearCache(self, request, context):
        return common_pb2.CacheClearResponse(**await asyncio.to_thread(self.cache.clear))


def _engine(backend: int) -> str:
    if backend == asr_pb2.BACKEND_DEEPGRAM:
        raise InvalidArgument("deepgram models run in Deepgram's cloud: there is nothing to load or unload")
    return OPENAI_WHISPER if backend == asr_pb2.BACKEND_OPENAI_WHISPER else FASTER_WHISPER


@contextlib.asynccontextmanager
async def _no_model() -> AsyncIterator[None]:
    """A cloud engine's stand-in for a loaded model."""
    yield None


def _emit_shifted(emit, offset: float, length: float, event: engine.Event) -> None:
    """Pass ``event`` on in file time; a segment hallucinated past the audio's end is dropped."""
    if (moved := engine.shifted(event, offset, length)) is not None:
        emit(moved)


def build(settings: AsrSettings) -> AsrServicer:
    device = devices.pick_device(settings.asr_device)
    compute_type = settings.asr_compute_type
    if compute_type == "auto":
        compute_type = "float16" if device.startswith("cuda") else "int8"
    models_dir = settings.subdir("models")
    catalog = ModelCatalog(
        models_dir, hub_allowlist=[n.strip() for n in settings.asr_model_allowlist.split(",")], offline=settings.asr_offline
    )
    loader = WhisperLoader(
        models_dir,
        device=device,
        compute_type=compute_type,
        cpu_threads=settings.asr_cpu_threads or os.cpu_count() or 1,
        hf_token=settings.hf_token.get_secret_value() if settings.hf_token else None,
    )
    models = ModelManager(loader, loader.unload, idle_ttl=settings.asr_model_idle_ttl_seconds, max_loaded=settings.asr_max_loaded_models)
    cache = TranscriptCache(settings.subdir("transcripts"), max_bytes=settings.asr_cache_max_bytes)
    downloader = DownloaderClient(settings.downloader_addr, max_message_bytes=settings.grpc_max_message_bytes, tls=client_tls(settings))
    servicer = AsrServicer(settings, catalog, models, cache, downloader, device=device, compute_type=compute_type)
    metrics.track_admission("asr", servicer.admission)
    return servicer


async def _on_started(servicer: AsrServicer) -> None:
    servicer.models.start_sweeper()
    for name in filter(None, (n.strip() for n in servicer.settings.asr_preload_models.split(","))):
        await servicer.models.load(servicer.catalog.resolve(name))


def run() -> None:
    """``transcription-asr``: serve until SIGTERM."""
    run_service(
        "asr", AsrSettings(), build, asr_pb2_grpc.add_AsrServicer_to_server, asr_pb2.DESCRIPTOR.services_by_name["Asr"], _on_started
    )
