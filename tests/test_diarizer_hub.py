"""A diarizer configured with a gated hub pipeline and no token says which variable is missing."""

from __future__ import annotations

import pytest

from conftest import JFK_FLAC, lone_diarizer
from transcription import errors
from transcription.clients import DiarizerClient


@pytest.fixture(scope="module")
def hub_diarizer(tmp_path_factory):
    with lone_diarizer("pyannote/speaker-diarization-3.1", tmp_path_factory.mktemp("hub-diarizer")) as address:
        yield address


async def test_gated_hub_pipeline_without_a_token_is_failed_precondition(hub_diarizer):
    async with DiarizerClient(hub_diarizer) as client:
        with pytest.raises(errors.FailedPrecondition, match="pyannote/speaker-diarization-3.1.*set HF_TOKEN"):
            [event async for event in client.diarize(JFK_FLAC.read_bytes())]
        assert await client.health() == "SERVING", "a configuration problem, reported per request; the service stays up"
