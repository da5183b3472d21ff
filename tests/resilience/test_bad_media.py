"""Hostile and odd media on every surface that takes audio: a URL over the WebSocket, the page's
upload, the OpenAI-compatible endpoint, the downloader's Upload and the ASR's inline audio.

Broken files are refused with a message saying what is wrong with them; odd but valid ones
(eight channels at 96 kHz, one sample, silence) are transcribed, to text or to nothing, not to an
error. Every case ends with every service SERVING and no partial file left behind.
"""

from __future__ import annotations

import asyncio
import json

import av
import numpy as np
import pytest
from surfaces import SERVING, health, short_error, ws_messages

from conftest import JFK_FLAC, JFK_TEXT, call, read_audio, silent_flac, wer, write_wav
from transcription.clients import AsrClient, DownloaderClient
from transcription.errors import ServiceError
from transcription.v1 import asr_pb2

TOO_LONG = "over the 4 h 00 min limit"
UNREADABLE = "not a readable audio"

# name -> what must come of it: ("error", part of the message) or ("text", the words expected, "" = none)
EXPECTED = {
    "empty.wav": ("error", "empty"),
    "truncated.flac": ("error", UNREADABLE),
    "corrupt-header.flac": ("error", UNREADABLE),
    "page.wav": ("error", "HTML page"),
    "video-only.mp4": ("error", "no audio"),
    "one-sample.wav": ("text", ""),
    "eight-channels-96k.wav": ("text", JFK_TEXT),
    "five-hours.flac": ("error", TOO_LONG),
    "silence.wav": ("text", ""),
}


def _video_only(path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _eight_channels_96k(path) -> None:
    jfk = read_audio(JFK_FLAC)
    upsampled = np.interp(np.arange(len(jfk) * 6) / 6, np.arange(len(jfk)), jfk).astype(np.float32)
    pcm = (np.repeat(upsampled[:, None], 8, axis=1) * 32767).astype("<i2")
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(8)
        w.setsampwidth(2)
        w.setframerate(96_000)
        w.writeframes(pcm.tobytes())


@pytest.fixture(scope="module")
def files(media) -> dict[str, bytes]:
    """The corpus, written into the media server's folder (so a URL serves it too)."""
    directory = media.directory / "bad-media"
    directory.mkdir(exist_ok=True)
    jfk = JFK_FLAC.read_bytes()
    (directory / "empty.wav").write_bytes(b"")
    (directory / "truncated.flac").write_bytes(jfk[:1500])  # STREAMINFO and a sliver of the first frame
    (directory / "corrupt-header.flac").write_bytes(b"fLaC" + bytes(range(256)) * 2 + jfk[600:])
    (directory / "page.wav").write_text("<!DOCTYPE html><html><body>Not found</body></html>\n" * 20)
    _video_only(directory / "video-only.mp4")
    write_wav(directory / "one-sample.wav", np.array([0.1], np.float32))
    _eight_channels_96k(directory / "eight-channels-96k.wav")
    (directory / "five-hours.flac").write_bytes(silent_flac(5 * 3600))
    write_wav(directory / "silence.wav", np.zeros(16_000 * 10, np.float32))
    return {name: (directory / name).read_bytes() for name in EXPECTED}


def _check(name: str, outcome: tuple[str, str]) -> None:
    kind, expected = EXPECTED[name]
    assert outcome[0] == kind, (name, outcome)
    if kind == "error":
        assert expected in outcome[1], (name, outcome)
        short_error(outcome[1])
    elif expected:
        assert wer(expected, outcome[1]) < 0.15, (name, outcome)
    else:
        assert outcome[1].strip() == "", (name, outcome)


def _after(system) -> None:
    assert health(system.ports.gateway)["services"] == SERVING
    assert not any((system.data_dir / "downloads" / "tmp").iterdir()), "a partial file was left behind"


def _ws_outcome(messages: list[dict]) -> tuple[str, str]:
    if messages[-1]["type"] == "error":
        return "error", messages[-1]["error"]
    assert messages[-1]["type"] == "complete", messages
    return "text", " ".join(m["text"].strip() for m in messages if m["type"] == "transcription_chunk")


@pytest.mark.parametrize("name", EXPECTED)
async def test_by_url(system, media, files, name):
    messages = await ws_messages(system.ports.gateway, json.dumps({"url": media.url(f"bad-media/{name}"), "model": "tiny.en"}))
    _check(name, _ws_outcome(messages))
    _after(system)


@pytest.mark.parametrize("name", EXPECTED)
async def test_by_upload(system, files, name):
    status, headers, body = call(system.ports.gateway, "POST", f"/api/upload?filename={name}", files[name])
    assert headers["content-type"] == "application/json"
    if status != 200:
        assert 400 <= status < 500, (status, body)
        outcome = ("error", json.loads(body)["error"])
    else:
        content_id = json.loads(body)["content_id"]
        outcome = _ws_outcome(await ws_messages(system.ports.gateway, json.dumps({"content_id": content_id, "model": "tiny.en"})))
    _check(name, outcome)
    _after(system)


@pytest.mark.parametrize("name", EXPECTED)
def test_by_openai_api(system, files, name):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny.en\r\n'
        + f'--b\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
        + files[name]
        + b"\r\n--b--\r\n"
    )
    status, _, reply = call(
        system.ports.gateway, "POST", "/v1/audio/transcriptions", body, {"Content-Type": "multipart/form-data; boundary=b"}
    )
    if status == 200:
        outcome = ("text", json.loads(reply)["text"])
    else:
        assert 400 <= status < 500, (status, reply)
        outcome = ("error", json.loads(reply)["error"]["message"])
    _check(name, outcome)
    _after(system)


@pytest.mark.parametrize("name", EXPECTED)
async def test_by_grpc_upload_and_inline_audio(system, files, name):
    async def one_block():
        yield files[name]

    options = asr_pb2.TranscribeOptions(model="tiny.en")
    async with DownloaderClient(f"127.0.0.1:{system.ports.downloader}") as downloader, AsrClient(f"127.0.0.1:{system.ports.asr}") as asr:
        try:
            ready = await downloader.upload(one_block(), filename=name)
        except ServiceError as exc:
            stored = ("error", exc.message)
        else:
            events = [e async for e in asr.transcribe(ready.content_id, options)]
            stored = ("text", " ".join(e.segment.text.strip() for e in events if e.HasField("segment")))
        # the ASR takes small files inline too, decoding them itself
        try:
            events = [e async for e in asr.transcribe(files[name], options, skip_cache=True)]
            inline = ("text", " ".join(e.segment.text.strip() for e in events if e.HasField("segment")))
        except ServiceError as exc:
            inline = ("error", exc.message)
    _check(name, stored)
    if name == "page.wav":  # the ASR decodes inline audio without the downloader's sniffing
        assert inline[0] == "error" and UNREADABLE in inline[1], inline
    elif name == "five-hours.flac":  # inline audio has a limit of its own, checked while decoding
        assert inline[0] == "error" and "inline audio is longer than the 1 h 00 min limit" in inline[1], inline
    else:
        _check(name, inline)
    await asyncio.sleep(0)
    _after(system)
