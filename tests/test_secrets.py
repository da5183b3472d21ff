"""Secrets come from the environment and never appear in logs or responses.

Runs after the other files (pytest orders them by name), so the logs it reads
hold the whole session's traffic: jobs, errors, model loads.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from conftest import HF_TOKEN_SENTINEL, ws_job


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


async def test_hf_token_is_in_no_response_and_no_log(system, media):
    # a hub model name makes the ASR service use its token route (offline here, so it fails)
    received = await ws_job(system, {"url": media.url("sample.wav"), "model": "org/no-such-model", "enable_diarization": False})
    assert received.messages[-1]["type"] == "error"
    bodies = [str(message) for message in received.messages]
    bodies += [get(system.url + path) for path in ("health", "gpu", "api/models", "api/cache/stats", "api/download-cache/stats")]
    assert all(HF_TOKEN_SENTINEL not in body for body in bodies)

    logs = sorted((system.data_dir / "logs").glob("*.log"))
    assert {log.stem for log in logs} == {"downloader", "asr", "diarizer", "gateway"}
    for log in logs:
        assert HF_TOKEN_SENTINEL not in log.read_text(errors="replace"), f"the token leaked into {log.name}"
