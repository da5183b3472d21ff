"""Origins that fail in every way a real server can (closed port, 404, text, a cut-off body, no DNS) and
requests the services refuse after the gateway let them through: each a clear error, services healthy."""

from __future__ import annotations

import pytest
from surfaces import SERVING, health, short_error

from conftest import free_port, ws_job


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"url": "http://unreachable.invalid/audio.mp3"}, "cannot resolve host unreachable.invalid"),
        ({"url": "http://127.0.0.1:{closed}/audio.mp3"}, "cannot connect to 127.0.0.1"),
        ({"url": "{media}not-audio.txt"}, "returned a text document, not audio or video"),
        ({"url": "{media}missing.wav"}, "HTTP 404"),
        ({"url": "{media}truncated.wav"}, "interrupted"),
        ({"url": "{media}sample.wav", "backend": "deepgram"}, "DEEPGRAM_API_KEY"),
    ],
)
async def test_bad_request_gets_error_and_services_stay_healthy(system, media, request_body, expected):
    body = {k: v.format(closed=free_port(), media=media.url("")) if isinstance(v, str) else v for k, v in request_body.items()}
    received = await ws_job(system, body, timeout=120)
    last = received.messages[-1]
    assert last["type"] == "error", received.messages
    assert expected in last["error"]
    short_error(last["error"])
    assert health(system.ports.gateway)["services"] == SERVING
    # Nothing half-written: no partial download is left behind.
    assert not any((system.data_dir / "downloads" / "tmp").iterdir())
