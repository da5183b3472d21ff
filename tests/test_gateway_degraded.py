"""When the diarizer fails or is too slow, the transcript still arrives, with an explicit warning."""

from __future__ import annotations

import pytest

from conftest import JFK_FLAC, JFK_TEXT, free_port, fresh_copy, start_gateway, wer, ws_job


@pytest.fixture
def fresh_audio(media, request) -> str:
    name = f"degraded-{request.node.name[-20:].strip('[]')}.wav"
    return fresh_copy(media, JFK_FLAC, name, seed=len(name))


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
