"""The gateway's own API: uploads, audio with Range, exports, the OpenAI-compatible endpoint,
cancel, and who may drive it (hosts, token, rates, sizes, headers)."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import time
import urllib.error
import urllib.request

import av
import numpy as np
import openai
import pytest
import srt
import websockets

from conftest import JFK_FLAC, JFK_TEXT, SAMPLE_STM, SAMPLE_WAV, call, fresh_copy, read_audio, scrape, start_gateway, stm_text, value, wer
from transcription.gateway.security import sign_url

TOKEN = "gw-test-token-0123456789"


def upload(port: int, path, headers: dict | None = None) -> tuple[int, dict]:
    status, _, body = call(port, "POST", f"/api/upload?filename={path.name}", path.read_bytes(), headers)
    return status, json.loads(body)


async def run_job(port: int, request: dict, subprotocols: list[str] | None = None) -> list[dict]:
    messages = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/transcribe", subprotocols=subprotocols, max_size=None) as ws:
        await ws.send(json.dumps(request))
        async with asyncio.timeout(300):
            while True:
                message = json.loads(await ws.recv())
                messages.append(message)
                if message["type"] in ("complete", "error"):
                    return messages


@pytest.fixture(scope="module")
def finished(system):
    """The two-speaker sample uploaded from disk and transcribed with speakers: (upload answer, messages)."""
    status, uploaded = upload(system.ports.gateway, SAMPLE_WAV)
    assert status == 200, uploaded
    messages = asyncio.run(
        run_job(system.ports.gateway, {"content_id": uploaded["content_id"], "filename": "sample.wav", "enable_diarization": True})
    )
    assert messages[-1]["type"] == "complete", messages[-1]
    return uploaded, messages


def test_upload_then_job_by_content_id(finished):
    uploaded, messages = finished
    assert uploaded["format"] == "wav" and abs(uploaded["duration"] - 30) < 0.1 and uploaded["size_bytes"] == SAMPLE_WAV.stat().st_size
    capture = next(m for m in messages if m["type"] == "capture_ready")
    assert capture["content_id"] == uploaded["content_id"]
    text = " ".join(m["text"] for m in messages if m["type"] == "transcription_chunk")
    assert wer(stm_text(SAMPLE_STM), text) < 0.35
    assert messages[-1]["num_speakers"] == 2


def test_exports_round_trip_through_parsers(system, finished):
    _, messages = finished
    complete = messages[-1]
    port = system.ports.gateway
    exports = {}
    for fmt, url in complete["exports"].items():
        status, headers, body = call(port, "GET", url)
        assert status == 200, (fmt, body[:200])
        assert "attachment" in headers["content-disposition"] and headers["content-disposition"].endswith(f'.{fmt}"')
        exports[fmt] = body.decode("utf-8")
    cues = list(srt.parse(exports["srt"]))
    document = json.loads(exports["json"])
    segments = document["segments"]
    assert len(cues) == len(segments) > 3
    for cue, segment in zip(cues, segments):
        assert abs(cue.start.total_seconds() - segment["start"]) < 0.001 and abs(cue.end.total_seconds() - segment["end"]) < 0.001
        assert cue.content.endswith(segment["text"].strip()) and segment["speaker"] in cue.content
    assert {s["speaker"] for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert exports["vtt"].startswith("WEBVTT") and exports["vtt"].count("<v SPEAKER_0") == len(segments)
    rows = list(csv.DictReader(io.StringIO(exports["tsv"]), delimiter="\t"))
    assert [int(r["start"]) for r in rows] == [round(s["start"] * 1000) for s in segments]
    assert (
        "SPEAKER_00" in exports["txt"]
        and wer(stm_text(SAMPLE_STM), exports["txt"].replace("SPEAKER_00:", "").replace("SPEAKER_01:", "")) < 0.35
    )
    status, _, body = call(port, "GET", f"/api/transcripts/{complete['job_id']}.docx")
    assert status == 400 and "srt" in json.loads(body)["error"]
    assert call(port, "GET", "/api/transcripts/0123.srt")[0] == 404


def test_audio_is_served_as_wav_with_range(system, finished):
    uploaded, messages = finished
    url = messages[-1]["audio_url"]
    port = system.ports.gateway
    status, headers, whole = call(port, "GET", url)
    assert status == 200 and headers["accept-ranges"] == "bytes" and headers["content-type"] == "audio/wav"
    assert len(whole) == 44 + 2 * 16_000 * 30 and whole[:4] == b"RIFF"
    with av.open(io.BytesIO(whole)) as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).astype(np.float32) / 32768
    assert np.max(np.abs(decoded - read_audio(SAMPLE_WAV))) < 1e-3
    status, headers, part = call(port, "GET", url, headers={"Range": "bytes=44-32043"})  # the first second of samples
    assert status == 206 and headers["content-range"] == f"bytes 44-32043/{len(whole)}" and part == whole[44:32044]
    status, _, tail = call(port, "GET", url, headers={"Range": "bytes=-100"})
    assert status == 206 and tail == whole[-100:]
    status, _, head = call(port, "GET", url, headers={"Range": "bytes=10-60"})  # across the header and the samples
    assert status == 206 and head == whole[10:61]
    status, headers, _ = call(port, "GET", url, headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(whole)}"
    assert call(port, "GET", "/api/audio/" + "0" * 64 + ".wav")[0] == 404
    assert call(port, "GET", "/api/audio/not-an-id.wav")[0] == 400


def test_old_client_ignoring_new_messages_gets_the_whole_transcript(finished):
    _, messages = finished
    reference_types = {
        "status", "download_progress", "cached_file", "transcription_progress", "transcription_chunk",
        "transcription_status", "capture_ready", "complete", "error",
    }  # fmt: skip
    old_view = [m for m in messages if m["type"] in reference_types]
    assert old_view[-1]["type"] == "complete"
    text = " ".join(m["text"] for m in old_view if m["type"] == "transcription_chunk")
    assert wer(stm_text(SAMPLE_STM), text) < 0.35
    extension = {m["type"] for m in messages} - reference_types
    assert extension <= {"metadata", "diarization_progress", "speaker_update", "queue_position", "warning"}, extension


def test_openai_sdk_against_the_gateway(system):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{system.ports.gateway}/v1", api_key="unused", max_retries=0)
    with JFK_FLAC.open("rb") as f:
        as_json = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(JFK_TEXT, as_json.text) <= 0.1
    with JFK_FLAC.open("rb") as f:
        text = client.audio.transcriptions.create(model="tiny.en", file=f, response_format="text")
    assert wer(JFK_TEXT, text) <= 0.15
    with JFK_FLAC.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", language="en", timestamp_granularities=["word", "segment"]
        )
    assert verbose.language == "english" and abs(verbose.duration - 11.0) < 0.1
    assert verbose.segments and verbose.words and len(verbose.words) >= 20
    assert all(a.start <= b.start for a, b in zip(verbose.words, verbose.words[1:]))
    with JFK_FLAC.open("rb") as f:
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert wer(JFK_TEXT, " ".join(cue.content for cue in srt.parse(subtitles))) <= 0.1
    with JFK_FLAC.open("rb") as f:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT")
    with pytest.raises(openai.BadRequestError, match="no-such-model"), JFK_FLAC.open("rb") as f:
        client.audio.transcriptions.create(model="no-such-model", file=f)
    assert {m.id for m in client.models.list()} >= {"base", "tiny.en"}


async def test_cancel_stops_the_downstream_work(system, media):
    url = fresh_copy(media, SAMPLE_WAV, "cancel-me.wav", seed=99)
    async with websockets.connect(f"ws://127.0.0.1:{system.ports.gateway}/ws/transcribe", max_size=None) as ws:
        await ws.send(json.dumps({"url": url, "model": "base", "enable_diarization": True}))
        async with asyncio.timeout(120):
            while json.loads(await ws.recv())["type"] != "transcription_status":
                pass
            await ws.send(json.dumps({"type": "cancel"}))
            while (message := json.loads(await ws.recv()))["type"] != "cancelled":
                assert message["type"] not in ("complete", "error"), message
        idle = False
        for _ in range(100):  # the ASR and the diarizer let go of their slots
            samples = [scrape(f"http://127.0.0.1:{system.metrics_ports[s]}/metrics") for s in ("asr", "diarizer")]
            if all(value(m, "transcription_active_jobs", service=s) == 0 for m, s in zip(samples, ("asr", "diarizer"))):
                idle = True
                break
            await asyncio.sleep(0.1)
        assert idle, "the downstream calls were cancelled"
        # the same connection takes the next job
        await ws.send(json.dumps({"url": url, "model": "tiny.en"}))
        async with asyncio.timeout(120):
            while (message := json.loads(await ws.recv()))["type"] not in ("complete", "error"):
                pass
        assert message["type"] == "complete"


# -- who may drive it -------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(system):
    """A gateway with a token and small limits, in front of the system's services."""
    process, port = start_gateway(
        system,
        GATEWAY_API_TOKEN=TOKEN,
        GATEWAY_MAX_UPLOAD_BYTES="1200000",
        GATEWAY_MAX_MESSAGE_BYTES="2048",
        GATEWAY_RATE_LIMIT_PER_MINUTE="0",
    )
    yield port
    process.terminate()
    process.wait(timeout=30)


AUTH = {"Authorization": f"Bearer {TOKEN}"}
SURFACES = [  # the token on every route: tests/resilience/test_security.py
    ("GET", "/api/models", None),
    ("GET", "/gpu", None),
    ("GET", "/api/download-cache/stats", None),
    ("POST", "/api/cache/clear", b""),
    ("POST", "/api/video-info", b'{"url": ""}'),
    ("POST", "/api/upload?filename=x.flac", b"x"),
    ("GET", "/api/audio/" + "0" * 64 + ".wav", None),
    ("GET", "/api/transcripts/x.srt", None),
    ("POST", "/v1/audio/transcriptions", b""),
]


async def test_audio_and_export_links_are_signed_for_their_resource_only(guarded, media):
    messages = await run_job(guarded, {"url": media.url("jfk.flac"), "model": "tiny.en"}, subprotocols=[f"token.{TOKEN}"])
    complete = messages[-1]
    capture = next(m for m in messages if m["type"] == "capture_ready")
    audio_path = f"/api/audio/{capture['content_id']}.wav"
    assert capture["audio_url"].split("?")[0] == complete["audio_url"].split("?")[0] == audio_path
    assert "signature=" in capture["audio_url"] and all("signature=" in url for url in complete["exports"].values())
    status, headers, _ = call(guarded, "GET", complete["audio_url"], headers={"Range": "bytes=0-99"})  # no header: the link is enough
    assert status == 206 and headers["content-range"].startswith("bytes 0-99/")
    assert call(guarded, "GET", complete["exports"]["srt"])[0] == 200
    path, query = complete["audio_url"].split("?")
    assert call(guarded, "GET", path)[0] == 401, "the bare path still needs the token"
    assert call(guarded, "GET", complete["exports"]["vtt"].split("?")[0] + "?" + query)[0] == 401, "a signature opens one path only"
    tampered = complete["audio_url"][:-1] + ("0" if complete["audio_url"][-1] != "0" else "1")
    assert call(guarded, "GET", tampered)[0] == 401
    expired = sign_url(path, TOKEN, now=time.time() - 2 * 24 * 3600)
    assert call(guarded, "GET", expired)[0] == 401
    assert call(guarded, "POST", "/api/cache/clear?" + query)[0] == 401, "signatures open downloads, nothing else"


def test_openai_sdk_with_the_token(guarded):
    base = f"http://127.0.0.1:{guarded}/v1"
    with pytest.raises(openai.AuthenticationError), JFK_FLAC.open("rb") as f:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).audio.transcriptions.create(model="whisper-1", file=f)
    with JFK_FLAC.open("rb") as f:
        result = openai.OpenAI(base_url=base, api_key=TOKEN, max_retries=0).audio.transcriptions.create(model="tiny.en", file=f)
    assert wer(JFK_TEXT, result.text) <= 0.15


def test_dns_rebinding_is_refused_but_the_own_name_works(guarded):
    rebound = {"Host": f"attacker.example:{guarded}", **AUTH}
    for method, path, body in SURFACES[:5]:
        assert call(guarded, method, path, body, rebound)[0] == 400, path
    assert call(guarded, "GET", "/", None, {"Host": "attacker.example"})[0] == 400
    for own in (f"127.0.0.1:{guarded}", f"localhost:{guarded}"):
        assert call(guarded, "GET", "/api/models", None, {"Host": own, **AUTH})[0] == 200
    assert call(guarded, "GET", "/health", None, {"Host": "10.1.2.3:8000"})[0] == 200  # probes use the pod's address


def websocket_handshake(port: int, host: str) -> int:
    """The status a WebSocket upgrade request with this Host header gets (101 = accepted)."""
    headers = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": f"token.{TOKEN}",
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/ws/transcribe", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_dns_rebinding_is_refused_on_the_websocket(guarded):
    assert websocket_handshake(guarded, f"attacker.example:{guarded}") == 403
    assert websocket_handshake(guarded, f"localhost:{guarded}") == 101


def test_size_limits(guarded):
    too_big = SAMPLE_WAV.read_bytes() * 2
    status, _, body = call(guarded, "POST", "/api/upload?filename=sample.wav", too_big, AUTH)
    assert status == 413 and "1200000-byte upload limit" in json.loads(body)["error"]
    status, _, body = call(guarded, "POST", "/api/video-info", json.dumps({"url": "x" * 5000}).encode(), AUTH)
    assert status == 413
    chunked = http.client.HTTPConnection("127.0.0.1", guarded, timeout=60)  # no Content-Length: cut off while streaming
    chunked.putrequest("POST", "/api/upload?filename=sample.wav")
    for name, value_ in {**AUTH, "Transfer-Encoding": "chunked"}.items():
        chunked.putheader(name, value_)
    chunked.endheaders()
    data = too_big
    for start in range(0, len(data), 65536):
        piece = data[start : start + 65536]
        chunked.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    chunked.send(b"0\r\n\r\n")
    response = chunked.getresponse()
    assert response.status == 413 and "upload limit" in json.loads(response.read())["error"]


async def test_websocket_message_limit(guarded):
    async with websockets.connect(f"ws://127.0.0.1:{guarded}/ws/transcribe", subprotocols=[f"token.{TOKEN}"]) as ws:
        await ws.send(json.dumps({"url": "http://example.org/" + "a" * 5000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009  # message too big, refused before it was buffered


def test_rate_limit_and_session_cap(system, media):
    process, port = start_gateway(system, GATEWAY_RATE_LIMIT_PER_MINUTE="2", GATEWAY_MAX_SESSIONS="1")
    try:
        body = json.dumps({"url": media.url("jfk.flac")}).encode()
        assert [call(port, "POST", "/api/video-info", body)[0] for _ in range(3)] == [200, 200, 429]
        status, headers, reply = call(port, "POST", "/api/video-info", body)
        assert status == 429 and "too many requests" in json.loads(reply)["error"] and headers["retry-after"]

        async def two_sessions():
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/transcribe"):
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/transcribe") as second:
                    message = json.loads(await second.recv())
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await second.recv()
                    return message, closed.value.rcvd.code

        message, code = asyncio.run(two_sessions())
        assert "too many open sessions" in message["error"] and code == 1013
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_json_errors_for_bad_bodies(system):
    port = system.ports.gateway
    status, _, body = call(port, "POST", "/api/video-info", b"not json", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["error"] == "the body must be JSON"
    status, _, body = call(port, "POST", "/api/upload?filename=page.html", b"<!DOCTYPE html><html></html>")
    assert status == 400 and "HTML page" in json.loads(body)["error"]
    status, _, body = call(port, "POST", "/v1/audio/transcriptions", b"", {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_empty_upload_is_refused(system):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{system.url}api/upload", data=b"", method="POST"), timeout=30)
    assert refused.value.code == 400 and "empty" in json.loads(refused.value.read())["error"]


async def test_decoding_options_reach_the_engine(system, media):
    """hotwords, temperature, VAD parameters and a prompt change what is decoded, and bad ones are refused."""
    url = media.url("jfk.flac")
    plain = await run_job(system.ports.gateway, {"url": url, "model": "tiny.en"})
    strict = await run_job(
        system.ports.gateway,
        {"url": url, "model": "tiny.en", "vad_parameters": {"threshold": 0.95, "min_speech_duration_ms": 3000}, "temperature": 0},
    )
    texts = [" ".join(m["text"] for m in messages if m["type"] == "transcription_chunk") for messages in (plain, strict)]
    assert wer(JFK_TEXT, texts[0]) <= 0.15
    assert texts[1] != texts[0], "a near-deaf VAD drops speech the default keeps"
    hot = await run_job(system.ports.gateway, {"url": url, "model": "tiny.en", "hotwords": "Americans", "initial_prompt": "JFK:"})
    assert hot[-1]["type"] == "complete"
    for bad, message in [
        ({"vad_parameters": {"loudness": 1}}, "vad_parameters must be an object with some of"),
        ({"vad_parameters": {"threshold": 1.5}}, "vad.threshold must be between 0 and 1"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"temperature": [0.2, 2.0]}, "between 0 and 1"),
        ({"hotwords": "x", "backend": "openai-whisper"}, "faster-whisper options"),
    ]:
        refused = await run_job(system.ports.gateway, {"url": url, "model": "tiny.en", **bad})
        assert refused[-1]["type"] == "error" and message in refused[-1]["error"], (bad, refused[-1])


NUMBER = (int, float)
# The reference app's message shapes (../shared/reference/single-process-app.md): field -> accepted types.
REFERENCE_SHAPES = {
    "status": {"message": str},
    "download_progress": {"downloaded": int, "total": (int, type(None)), "percent": (*NUMBER, type(None))},
    "cached_file": {"message": str},
    "transcription_progress": {"progress": int, "total_duration": NUMBER},
    "transcription_chunk": {"text": str, "start": NUMBER, "end": NUMBER, "speaker": (str, type(None))},
    "transcription_status": {"status": str},
    "capture_ready": {"filename": str},
    "complete": {"message": str},
    "error": {"error": str},
}


async def test_every_reference_message_type_keeps_its_shape(system, media):
    url = fresh_copy(media, JFK_FLAC, "shapes.wav", seed=5)
    fresh = await run_job(system.ports.gateway, {"url": url, "model": "tiny.en", "enable_diarization": True})
    again = await run_job(system.ports.gateway, {"url": url, "model": "tiny.en"})  # cached_file
    failed = await run_job(system.ports.gateway, {"url": "ftp://127.0.0.1/x.mp3"})
    messages = fresh + again + failed
    assert {m["type"] for m in messages} >= REFERENCE_SHAPES.keys(), "every reference type was seen"
    for message in messages:
        for field, kinds in REFERENCE_SHAPES.get(message["type"], {}).items():
            assert isinstance(message.get(field), kinds), (message["type"], field, message)
        if message["type"] == "status" and "progress" in message:
            assert isinstance(message["progress"], NUMBER)
        if message["type"] == "transcription_status":
            assert message["status"] in ("started", "processing", "completed")
    progress = [m["progress"] for m in fresh if m["type"] == "transcription_progress"]
    assert all(0 <= p <= 100 for p in progress) and progress[-1] == 100
