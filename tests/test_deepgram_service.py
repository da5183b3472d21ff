"""The deepgram backend through the ASR service and the gateway, against the local Deepgram fake."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest
from fake_deepgram import FakeDeepgram, WhisperTranscriber, read_rttm, sha256

from conftest import JFK_FLAC, JFK_TEXT, NETGUARD, SAMPLE_WAV, TESTDATA, console_command, free_port, start_gateway, wer, ws_job
from transcription import errors
from transcription.asr.models import BUNDLED, materialize_bundled
from transcription.clients import AsrClient
from transcription.v1 import asr_pb2

KEY = "dg0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3"  # made up; must never show up in a message or a log


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    model_dir = materialize_bundled(BUNDLED["tiny.en"], tmp_path_factory.mktemp("models"))
    diarization = {sha256(SAMPLE_WAV.read_bytes()): read_rttm(TESTDATA / "pyannote-sample" / "sample.rttm")}
    with FakeDeepgram(KEY, WhisperTranscriber(model_dir), diarization=diarization) as server:
        yield server


@pytest.fixture(scope="module")
def deepgram_asr(system, fake, tmp_path_factory):
    """A second ASR service holding a Deepgram key, pointed at the fake."""
    port, data = free_port(), tmp_path_factory.mktemp("asr-deepgram")
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(data),
        "ASR_PORT": str(port),
        "DOWNLOADER_ADDR": f"127.0.0.1:{system.ports.downloader}",
        "DEEPGRAM_API_KEY": KEY,
        "DEEPGRAM_BASE_URL": fake.url,
    }
    log = (data / "asr.log").open("w")
    process = subprocess.Popen([console_command("transcription-asr")], env=env, stdout=log, stderr=subprocess.STDOUT)
    grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=60)
    yield f"127.0.0.1:{port}", data / "asr.log"
    process.terminate()
    process.wait(timeout=30)
    log.close()


async def test_asr_service_transcribes_with_deepgram_and_keeps_the_key_secret(deepgram_asr, fake):
    address, log = deepgram_asr
    options = asr_pb2.TranscribeOptions(backend=asr_pb2.BACKEND_DEEPGRAM, language="en", word_timestamps=True)
    async with AsrClient(address) as client:
        events = [e async for e in client.transcribe(JFK_FLAC.read_bytes(), options, skip_cache=True)]
        listed = {m.name: m for m in (await client.list_models()).models}
        fake.respond_next(401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."})
        with pytest.raises(errors.FailedPrecondition, match="DEEPGRAM_API_KEY") as refused:
            [e async for e in client.transcribe(JFK_FLAC.read_bytes(), options, skip_cache=True)]
    assert events[0].started.backend == asr_pb2.BACKEND_DEEPGRAM
    text = " ".join(e.segment.text for e in events if e.HasField("segment"))
    assert wer(JFK_TEXT, text) <= 0.1 and all(e.segment.words for e in events if e.HasField("segment"))
    assert fake.requests[0].param("model") == "nova-3" and fake.requests[0].param("language") == "en"
    assert listed["nova-3"].available and listed["nova-3"].backend == asr_pb2.BACKEND_DEEPGRAM
    assert KEY not in refused.value.message and KEY not in log.read_text()


async def test_gateway_job_with_deepgram_gets_speakers_from_deepgram(system, deepgram_asr, media):
    process, port = start_gateway(system, ASR_ADDR=deepgram_asr[0])
    try:
        received = await ws_job(port, {"url": media.url("sample.wav"), "backend": "deepgram", "enable_diarization": True})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    chunks = received.of("transcription_chunk")
    assert {c["speaker"] for c in chunks} == {"SPEAKER_00", "SPEAKER_01"}, "speakers come inline from Deepgram"
    assert chunks[0]["speaker"] == "SPEAKER_00" and received.messages[-1]["num_speakers"] == 2
    assert not received.of("diarization_progress"), "the local diarizer is not asked"
