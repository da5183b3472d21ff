"""Secrets come from the environment and never appear in logs or responses.

Independent of the other tests: it runs its own traffic through the system
(a fresh download, transcription and diarization, a hub model name that takes
the token route and fails, every REST endpoint) before reading the responses
and every service's log.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from conftest import HF_TOKEN_SENTINEL, SAMPLE_WAV, ws_job


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


async def test_hf_token_is_in_no_response_and_no_log(system, media):
    name = "secrets-sample.wav"  # a name no other test fetches: a real download, decode and diarization
    if not (media.directory / name).exists():
        (media.directory / name).symlink_to(SAMPLE_WAV)
    job = await ws_job(system, {"url": media.url(name), "model": "tiny.en", "enable_diarization": True})
    assert job.messages[-1]["type"] == "complete", job.messages[-1]
    assert job.of("download_progress") and job.of("speaker_update")
    # a hub model name makes the ASR service use its token route (offline here, so it fails)
    failed = await ws_job(system, {"url": media.url(name), "model": "org/no-such-model", "enable_diarization": False})
    assert failed.messages[-1]["type"] == "error"

    bodies = [str(message) for message in job.messages + failed.messages]
    bodies += [get(system.url + path) for path in ("health", "gpu", "api/models", "api/cache/stats", "api/download-cache/stats")]
    assert all(HF_TOKEN_SENTINEL not in body for body in bodies)

    logs = sorted((system.data_dir / "logs").glob("*.log"))
    assert {log.stem for log in logs} == {"downloader", "asr", "diarizer", "gateway"}
    assert "org/no-such-model" in (system.data_dir / "logs" / "asr.log").read_text(), "the failing load was not logged"
    for log in logs:
        assert HF_TOKEN_SENTINEL not in log.read_text(errors="replace"), f"the token leaked into {log.name}"
