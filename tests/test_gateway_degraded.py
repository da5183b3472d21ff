"""When the diarizer fails or is too slow, the transcript still arrives, with an explicit warning."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from conftest import JFK_FLAC, JFK_TEXT, NETGUARD, console_command, free_port, read_audio, wer, write_wav, ws_job


def start_gateway(system, **env) -> tuple[subprocess.Popen, int]:
    """Another gateway in front of the system's services, with other settings."""
    port = free_port()
    process = subprocess.Popen(
        [console_command("transcription-gateway")],
        env={
            **os.environ,
            "PYTHONPATH": str(NETGUARD),
            "GATEWAY_PORT": str(port),
            "DOWNLOADER_ADDR": f"127.0.0.1:{system.ports.downloader}",
            "ASR_ADDR": f"127.0.0.1:{system.ports.asr}",
            "DIARIZER_ADDR": f"127.0.0.1:{system.ports.diarizer}",
            **env,
        },
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
    return process, port


@pytest.fixture
def fresh_audio(media, request) -> str:
    """jfk with a little noise: new bytes, so no cache anywhere knows it."""
    name = f"degraded-{request.node.name[-20:].strip('[]')}.wav"
    samples = read_audio(JFK_FLAC) + np.random.default_rng(len(name)).normal(0, 1e-4, 1).astype(np.float32)
    write_wav(media.directory / name, samples)
    return media.url(name)


@pytest.mark.parametrize(
    "setting, reason",
    [
        ({"DIARIZER_ADDR": "127.0.0.1:{closed}"}, "diarizer"),  # unreachable
        ({"GATEWAY_DIARIZATION_TIMEOUT_SECONDS": "0.05"}, "no result within"),  # too slow
    ],
)
async def test_transcript_arrives_with_a_warning_when_speakers_cannot_be_found(system, fresh_audio, setting, reason):
    env = {key: value.format(closed=free_port()) for key, value in setting.items()}
    process, gateway = start_gateway(system, **env)
    try:
        received = await ws_job(gateway, {"url": fresh_audio, "model": "tiny.en", "enable_diarization": True})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    (warning,) = received.of("warning")
    assert warning["code"] == "diarization_failed" and reason in warning["message"]
    assert not received.of("speaker_update") and received.messages[-1]["num_speakers"] is None
    assert wer(JFK_TEXT, " ".join(c["text"] for c in received.of("transcription_chunk"))) <= 0.1
