"""Bad input gets a clear error message and leaves the services healthy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from conftest import free_port, ws_job


def health(system) -> dict:
    with urllib.request.urlopen(f"{system.url}health", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"model": "base"}, "URL is required"),
        ({"url": "   "}, "URL is required"),
        ({"url": "file:///etc/passwd"}, "unsupported URL scheme 'file'"),
        ({"url": "ftp://127.0.0.1/x.mp3"}, "unsupported URL scheme 'ftp'"),
        ({"url": "http://unreachable.invalid/audio.mp3"}, "cannot resolve host unreachable.invalid"),
        ({"url": "http://127.0.0.1:{closed}/audio.mp3"}, "cannot connect to 127.0.0.1"),
        ({"url": "{media}not-audio.txt"}, "returned a text document, not audio or video"),
        ({"url": "{media}missing.wav"}, "HTTP 404"),
        ({"url": "{media}truncated.wav"}, "interrupted"),
        ({"url": "{media}sample.wav", "backend": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"url": "{media}sample.wav", "model": "no-such-model", "enable_diarization": False}, "no-such-model"),
        ({"url": "{media}sample.wav", "enable_diarization": True, "min_speakers": 3, "max_speakers": 2}, "min_speakers"),
        ({"url": "{media}sample.wav", "enable_diarization": True, "num_speakers": 2**32}, "between 0 and 100"),
    ],
)
async def test_bad_request_gets_error_and_services_stay_healthy(system, media, request_body, expected):
    body = {k: v.format(closed=free_port(), media=media.url("")) if isinstance(v, str) else v for k, v in request_body.items()}
    received = await ws_job(system, body, timeout=120)
    last = received.messages[-1]
    assert last["type"] == "error", received.messages
    assert expected in last["error"]
    assert "Traceback" not in last["error"]
    assert health(system)["services"] == {"downloader": "SERVING", "asr": "SERVING", "diarizer": "SERVING"}
    # Nothing half-written: no partial download is left behind.
    assert not any((system.data_dir / "downloads" / "tmp").iterdir())


async def test_invalid_json_keeps_socket_usable(system, media):
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{system.ports.gateway}/ws/transcribe") as ws:
        await ws.send("{not json")
        assert json.loads(await ws.recv()) == {"type": "error", "error": "the request must be JSON"}
        await ws.send(json.dumps({"url": ""}))
        assert json.loads(await ws.recv())["error"] == "URL is required"
        await ws.send(b"\x00binary")
        assert json.loads(await ws.recv())["error"] == "send the request as a JSON text message"
        await ws.send(json.dumps({"url": ""}))
        assert json.loads(await ws.recv())["error"] == "URL is required"


async def test_other_web_origins_are_refused(system):
    """A page on another site cannot drive the gateway through the user's browser."""
    import websockets

    uri = f"ws://127.0.0.1:{system.ports.gateway}/ws/transcribe"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(uri, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    # its own origin (the page the gateway serves) is fine
    async with websockets.connect(uri, origin=f"http://127.0.0.1:{system.ports.gateway}") as ws:
        await ws.send(json.dumps({"url": ""}))
        assert json.loads(await ws.recv())["error"] == "URL is required"

    def post(origin: str) -> int:
        request = urllib.request.Request(f"{system.url}api/cache/clear", data=b"", method="POST", headers={"Origin": origin})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            assert json.loads(error.read())["error"].startswith("cross-origin request refused")
            return error.code

    assert post("https://evil.example") == 403
    assert post(f"http://127.0.0.1:{system.ports.gateway}") == 200
