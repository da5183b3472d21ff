"""gRPC transport for the diarizer."""

from __future__ import annotations

import asyncio
import time

import grpc

from diarizer.settings import DiarizerSettings
from transcription import audio, devices, log
from transcription.clients import DownloaderClient, resolve_audio
from transcription.errors import InvalidArgument, ResourceExhausted
from transcription.grpc_server import rpc, serve
from transcription.threads import Admission, stream_from_thread
from transcription.v1 import diarizer_pb2, diarizer_pb2_grpc


class DiarizerServicer(diarizer_pb2_grpc.DiarizerServicer):
    def __init__(self, settings: DiarizerSettings, engine, downloader: DownloaderClient):
        self.settings = settings
        self.engine = engine
        self.downloader = downloader
        self.admission = Admission(settings.diarizer_max_concurrent, settings.diarizer_max_queue)

    @rpc
    async def Diarize(self, request: diarizer_pb2.DiarizeRequest, context):
        o = request.options
        if o.min_speakers and o.max_speakers and o.min_speakers > o.max_speakers:
            raise InvalidArgument("min_speakers cannot be larger than max_speakers")
        if self.admission.full():
            raise ResourceExhausted("the diarizer is at capacity; try again shortly")
        data = await resolve_audio(request.audio, self.downloader)
        async with self.admission:
            began = time.monotonic()
            yield diarizer_pb2.DiarizeEvent(progress=diarizer_pb2.DiarizationProgress(stage="decoding", percent=0))
            pcm = await asyncio.to_thread(audio.decode, data)
            await asyncio.to_thread(self.engine.load)

            def work(emit):
                turns = self.engine.diarize(
                    pcm,
                    num_speakers=o.num_speakers or None,
                    min_speakers=o.min_speakers or None,
                    max_speakers=o.max_speakers or None,
                    progress=lambda stage, percent: emit((stage, percent)),
                )
                emit(turns)

            turns = []
            async for item in stream_from_thread(work):
                if isinstance(item, tuple):
                    stage, percent = item
                    yield diarizer_pb2.DiarizeEvent(progress=diarizer_pb2.DiarizationProgress(stage=stage, percent=percent))
                else:
                    turns = item
        for turn in turns:
            yield diarizer_pb2.DiarizeEvent(turn=diarizer_pb2.SpeakerTurn(start=turn.start, end=turn.end, speaker=turn.speaker))
        yield diarizer_pb2.DiarizeEvent(
            completed=diarizer_pb2.DiarizationCompleted(
                num_speakers=len({t.speaker for t in turns}),
                turn_count=len(turns),
                processing_seconds=time.monotonic() - began,
                audio_seconds=pcm.size / audio.SAMPLE_RATE,
            )
        )

    @rpc
    async def GetDeviceInfo(self, request, context):
        return devices.device_info()


def build(settings: DiarizerSettings) -> DiarizerServicer:
    from diarizer.engine import DiarizationEngine  # heavy: torch + pyannote

    engine = DiarizationEngine(
        pipeline=settings.diarizer_pipeline,
        device=devices.pick_device(settings.diarizer_device),
        num_threads=settings.diarizer_threads,
        hf_token=settings.hf_token.get_secret_value() if settings.hf_token else None,
    )
    downloader = DownloaderClient(settings.downloader_addr, max_message_bytes=settings.grpc_max_message_bytes)
    return DiarizerServicer(settings, engine, downloader)


async def main() -> None:
    settings = DiarizerSettings()
    log.configure("diarizer", settings.log_level)
    servicer = build(settings)

    def register(server: grpc.aio.Server):
        diarizer_pb2_grpc.add_DiarizerServicer_to_server(servicer, server)
        return [diarizer_pb2.DESCRIPTOR.services_by_name["Diarizer"].full_name]

    async def preload():
        if settings.diarizer_preload:
            await asyncio.to_thread(servicer.engine.load)

    await serve(
        name="diarizer",
        host=settings.diarizer_host,
        port=settings.diarizer_port,
        register=register,
        grace_seconds=settings.grpc_grace_seconds,
        max_message_bytes=settings.grpc_max_message_bytes,
        on_started=preload,
    )
