"""A diarizer configured with a gated hub pipeline and no token says which variable is missing."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest

from conftest import JFK_FLAC, NETGUARD, console_command, free_port
from transcription import errors
from transcription.clients import DiarizerClient


@pytest.fixture(scope="module")
def hub_diarizer(tmp_path_factory):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    env.update(
        PYTHONPATH=str(NETGUARD),
        DATA_DIR=str(tmp_path_factory.mktemp("hub-diarizer")),
        DIARIZER_PORT=str(port),
        DIARIZER_PIPELINE="pyannote/speaker-diarization-3.1",
        DIARIZER_PRELOAD="false",
        HF_HUB_OFFLINE="1",  # no hub here; a token would be needed there anyway
    )
    process = subprocess.Popen([console_command("transcription-diarizer")], env=env, stderr=subprocess.DEVNULL)
    grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=120)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


async def test_gated_hub_pipeline_without_a_token_is_failed_precondition(hub_diarizer):
    async with DiarizerClient(hub_diarizer) as client:
        with pytest.raises(errors.FailedPrecondition, match="pyannote/speaker-diarization-3.1.*set HF_TOKEN"):
            [event async for event in client.diarize(JFK_FLAC.read_bytes())]
        assert await client.health() == "SERVING", "a configuration problem, reported per request; the service stays up"
