"""Command-line client: run the pipeline through the running services.

    transcribe https://example.org/talk.mp3 --diarize
    transcribe recording.wav --language he

Prints a timestamped transcript, speaker-labelled with ``--diarize``. A local
file is sent inline to the ASR and diarizer services (no downloader needed); a
URL goes through the downloader once and is shared by content id.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from transcription import errors
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.settings import CommonSettings
from transcription.speakers import SpeakerTimeline
from transcription.tls import TlsConfigError, client_tls
from transcription.v1 import asr_pb2, diarizer_pb2


def timestamp(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{int(seconds * 100) % 100:02d}"


def line(segment: asr_pb2.Segment, speaker: str | None) -> str:
    who = f"{speaker}: " if speaker else ""
    return f"[{timestamp(segment.start)} -> {timestamp(segment.end)}] {who}{segment.text}"


async def audio_source(target: str, downloader: DownloaderClient) -> str | bytes:
    """Inline bytes for a local file, else the downloaded audio's content id."""
    path = Path(target)
    if path.is_file():
        return path.read_bytes()
    content_id = None
    async for event in downloader.fetch(target):  # read to the end: leaving early would cancel the call
        kind = event.WhichOneof("event")
        if kind == "progress" and event.progress.percent >= 0:
            print(f"\rdownloading {event.progress.percent:5.1f}%", end="", file=sys.stderr)
        elif kind == "cache_hit":
            print("using cached audio", file=sys.stderr)
        elif kind == "ready":
            print(file=sys.stderr)
            content_id = event.ready.content_id
    if content_id is None:
        raise errors.Unavailable("the downloader ended without delivering audio")
    return content_id


async def transcribe(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    tls = client_tls(settings)
    async with (
        DownloaderClient(args.downloader or settings.downloader_addr, tls=tls) as downloader,
        AsrClient(args.asr or settings.asr_addr, tls=tls) as asr,
        DiarizerClient(args.diarizer or settings.diarizer_addr, tls=tls) as diarizer,
    ):
        audio = await audio_source(args.target, downloader)
        options = asr_pb2.TranscribeOptions(model=args.model or "", language=args.language or "", beam_size=args.beam_size)

        async def diarize() -> list[diarizer_pb2.SpeakerTurn]:
            found = []
            async for event in diarizer.diarize(audio, diarizer_pb2.DiarizeOptions(num_speakers=args.num_speakers)):
                if event.WhichOneof("event") == "turn":
                    found.append(event.turn)
            return found

        turns_task = asyncio.create_task(diarize()) if args.diarize else None
        segments: list[asr_pb2.Segment] = []
        async for event in asr.transcribe(audio, options):
            kind = event.WhichOneof("event")
            if kind == "started":
                print(f"language: {event.started.language}", file=sys.stderr)
            elif kind == "segment":
                segments.append(event.segment)
                # Without diarization each segment is final the moment it arrives.
                print(line(event.segment, None), file=sys.stderr if args.diarize else sys.stdout, flush=True)
        if turns_task is not None:
            timeline = SpeakerTimeline(await turns_task)
            print(f"speakers: {len({t.speaker for t in timeline.turns})}", file=sys.stderr)
            for segment in segments:
                print(line(segment, timeline.speaker_for(segment.start, segment.end)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transcribe", description="Transcribe a URL or a local audio/video file through the running services."
    )
    parser.add_argument("target", help="URL or path of a local file")
    parser.add_argument("--diarize", action="store_true", help="label each segment with its speaker")
    parser.add_argument("--model", help="ASR model (default: the service's)")
    parser.add_argument("--language", help="language code; default: detect")
    parser.add_argument("--beam-size", type=int, default=0)
    parser.add_argument("--num-speakers", type=int, default=0, help="exact number of speakers, if known")
    parser.add_argument("--downloader", help="downloader address (default: DOWNLOADER_ADDR)")
    parser.add_argument("--asr", help="ASR address (default: ASR_ADDR)")
    parser.add_argument("--diarizer", help="diarizer address (default: DIARIZER_ADDR)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(transcribe(args))
    except errors.ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except TlsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
