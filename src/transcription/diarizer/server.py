"""gRPC transport for the diarizer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import asdict

from transcription import audio, devices, metrics
from transcription.clients import DownloaderClient
from transcription.diarizer.settings import DiarizerSettings
from transcription.errors import FailedPrecondition, InvalidArgument
from transcription.grpc_server import rpc, run_service
from transcription.jsoncache import JsonCache
from transcription.speakers import MAX_SPEAKERS, Turn
from transcription.threads import Admission, stream_from_thread
from transcription.tls import client_tls
from transcription.v1 import common_pb2, diarizer_pb2, diarizer_pb2_grpc


class DiarizerServicer(diarizer_pb2_grpc.DiarizerServicer):
    def __init__(self, settings: DiarizerSettings, engine, downloader: DownloaderClient, cache: JsonCache):
        self.settings = settings
        self.engine = engine
        self.downloader = downloader
        self.cache = cache
        self.admission = Admission(settings.diarizer_max_concurrent, settings.diarizer_max_queue, "diarizer")

    def _cache_key(self, content_id: str, o: diarizer_pb2.DiarizeOptions) -> str:
        # every input that changes the turns: the audio, the pipeline and its settings, the counts asked for
        return f"{content_id}|{self.engine.identity}|{o.num_speakers}|{o.min_speakers}|{o.max_speakers}"

    async def _cached(self, content_id: str, o: diarizer_pb2.DiarizeOptions) -> list[diarizer_pb2.DiarizeEvent] | None:
        data = await asyncio.to_thread(self.cache.get, self._cache_key(content_id, o))
        metrics.CACHE.labels("diarizer", "diarizations", "hit" if data else "miss").inc()
        if data is None:
            return None
        turns = [Turn(**t) for t in data["turns"]]
        return _result_events(turns, processing_seconds=0.0, audio_seconds=data["audio_seconds"], from_cache=True)

    @rpc
    async def Diarize(self, request: diarizer_pb2.DiarizeRequest, context):
        o = request.options
        if max(o.num_speakers, o.min_speakers, o.max_speakers) > MAX_SPEAKERS:
            raise InvalidArgument(f"speaker counts must be at most {MAX_SPEAKERS}")
        if o.min_speakers and o.max_speakers and o.min_speakers > o.max_speakers:
            raise InvalidArgument("min_speakers cannot be larger than max_speakers")
        if o.num_speakers and not (o.min_speakers or 0) <= o.num_speakers <= (o.max_speakers or MAX_SPEAKERS):
            raise InvalidArgument("num_speakers must lie between min_speakers and max_speakers")
        use_cache = not request.skip_cache
        content_id = request.audio.content_id
        if content_id and use_cache and (cached := await self._cached(content_id, o)):  # no audio, no slot needed
            for event in cached:
                yield event
            return
        if not content_id and request.audio.inline_audio:  # inline audio: keyed by its hash
            content_id = hashlib.sha256(request.audio.inline_audio).hexdigest()
            if use_cache and (cached := await self._cached(content_id, o)):
                for event in cached:
                    yield event
                return
        async with self.admission.reserve():
            async with self.admission.slot():  # only then is the audio read: a waiting job holds none
                began = time.monotonic()
                yield diarizer_pb2.DiarizeEvent(progress=diarizer_pb2.DiarizationProgress(stage="decoding", percent=0))
                pcm = await audio.resolve_samples(request.audio, self.downloader)
                await asyncio.to_thread(self._load)

                def work(emit):
                    try:
                        turns = self.engine.diarize(
                            pcm,
                            num_speakers=o.num_speakers or None,
                            min_speakers=o.min_speakers or None,
                            max_speakers=o.max_speakers or None,
                            progress=lambda stage, percent: emit((stage, percent)),
                        )
                    except ValueError as exc:  # the engine's word for unusable input
                        raise InvalidArgument(str(exc)) from exc
                    emit(turns)

                turns = []
                async for item in stream_from_thread(work):
                    if isinstance(item, tuple):
                        stage, percent = item
                        yield diarizer_pb2.DiarizeEvent(progress=diarizer_pb2.DiarizationProgress(stage=stage, percent=percent))
                    else:
                        turns = item
        audio_seconds = pcm.size / audio.SAMPLE_RATE
        metrics.AUDIO_SECONDS.labels("diarizer", self.engine.pipeline_name).inc(audio_seconds)
        if use_cache:
            entry = {"turns": [asdict(t) for t in turns], "audio_seconds": audio_seconds}
            await asyncio.to_thread(self.cache.put, self._cache_key(content_id, o), entry)
        for event in _result_events(turns, processing_seconds=time.monotonic() - began, audio_seconds=audio_seconds):
            yield event

    @rpc
    async def GetCacheStats(self, request, context):
        return common_pb2.CacheStats(**await asyncio.to_thread(self.cache.stats))

    @rpc
    async def ClearCache(self, request, context):
        return common_pb2.CacheClearResponse(**await asyncio.to_thread(self.cache.clear))

    def _load(self) -> None:
        """Load the pipeline; a failure is a configuration problem, reported as one."""
        try:
            self.engine.load()
        except Exception as exc:  # noqa: BLE001 - hub, file and weight errors come in many types
            raise FailedPrecondition(f"the diarization pipeline cannot be loaded: {exc}") from exc

    @rpc
    async def GetDeviceInfo(self, request, context):
        return await asyncio.to_thread(devices.device_info, self.engine.device, "float32")


def _result_events(turns: list[Turn], *, processing_seconds: float, audio_seconds: float, from_cache: bool = False):
    events = [diarizer_pb2.DiarizeEvent(turn=diarizer_pb2.SpeakerTurn(start=t.start, end=t.end, speaker=t.speaker)) for t in turns]
    completed = diarizer_pb2.DiarizationCompleted(
        num_speakers=len({t.speaker for t in turns}),
        turn_count=len(turns),
        processing_seconds=processing_seconds,
        audio_seconds=audio_seconds,
        from_cache=from_cache,
    )
    return [*events, diarizer_pb2.DiarizeEvent(completed=completed)]


def build(settings: DiarizerSettings) -> DiarizerServicer:
    from transcription.diarizer.engine import DiarizationEngine  # heavy: torch + pyannote

    engine = DiarizationEngine(
        pipeline=settings.diarizer_pipeline,
        device=devices.pick_device(settings.diarizer_device),
        num_threads=settings.diarizer_threads,
        hf_token=settings.hf_token.get_secret_value() if settings.hf_token else None,
    )
    downloader = DownloaderClient(settings.downloader_addr, max_message_bytes=settings.grpc_max_message_bytes, tls=client_tls(settings))
    servicer = DiarizerServicer(
        settings, engine, downloader, JsonCache(settings.subdir("diarizations"), max_bytes=settings.diarizer_cache_max_bytes)
    )
    metrics.track_admission("diarizer", servicer.admission)
    return servicer


async def _preload(servicer: DiarizerServicer) -> None:
    if servicer.settings.diarizer_preload:
        try:
            await asyncio.to_thread(servicer._load)
        except FailedPrecondition as exc:  # misconfigured: say why and stop, no traceback
            logging.getLogger("diarizer").error("%s", exc.message)
            raise SystemExit(1) from None


def run() -> None:
    """``transcription-diarizer``: serve until SIGTERM."""
    run_service(
        "diarizer",
        DiarizerSettings(),
        build,
        diarizer_pb2_grpc.add_DiarizerServicer_to_server,
        diarizer_pb2.DESCRIPTOR.services_by_name["Diarizer"],
        _preload,
    )
