"""Malformed requests on every surface: the WebSocket, the REST API, uploads, the OpenAI-compatible
endpoint, and each gRPC service called directly.

Every case asserts a clear refusal (an ``error`` message, a 4xx JSON body or the right gRPC status
with a readable message), and `Unchanged` checks afterwards that every service is still SERVING and
that nothing was written.
"""

from __future__ import annotations

import json

import grpc
import pytest
from surfaces import Unchanged, short_error, ws_messages

from conftest import JFK_FLAC, call
from transcription.clients import audio_ref
from transcription.v1 import asr_pb2, asr_pb2_grpc, common_pb2, diarizer_pb2, diarizer_pb2_grpc, downloader_pb2, downloader_pb2_grpc

MEGABYTE = "x" * 1_000_000
NO_AUDIO = "f" * 64  # a well-formed content id nothing is stored under

# -- the WebSocket ----------------------------------------------------------------------------

# (request as sent, part of the error). "{media}" is the test media server; no case gets past
# validation, so nothing is fetched from it.
WEBSOCKET_CASES = {
    "not JSON": ("{not json", "the request must be JSON"),
    "truncated JSON": ('{"url": "http://media.test/a.wav", "model": "ti', "the request must be JSON"),
    "a JSON array": ('["url", "http://media.test/a.wav"]', "the request must be a JSON object"),
    "a JSON string": ('"http://media.test/a.wav"', "the request must be a JSON object"),
    "JSON null": ("null", "the request must be a JSON object"),
    "empty object": ({}, "URL is required"),
    "only a model": ({"model": "base"}, "URL is required"),
    "blank URL": ({"url": " \t\n"}, "URL is required"),
    "URL as a number": ({"url": 123}, "url must be a string, not a number"),
    "URL as a list": ({"url": ["{media}jfk.flac"]}, "url must be a string, not a list"),
    "model as a list": ({"url": "{media}jfk.flac", "model": ["base"]}, "model must be a string"),
    "model as an object": ({"url": "{media}jfk.flac", "model": {"name": "base"}}, "model must be a string"),
    "diarization as a string": ({"url": "{media}jfk.flac", "enable_diarization": "no"}, "enable_diarization must be true or false"),
    "word timestamps as a number": ({"url": "{media}jfk.flac", "word_timestamps": 1}, "word_timestamps must be true or false"),
    "speakers as a word": ({"url": "{media}jfk.flac", "num_speakers": "two"}, "speaker counts must be whole numbers"),
    "speakers as a fraction": ({"url": "{media}jfk.flac", "num_speakers": 2.5}, "num_speakers must be a whole number"),
    "speakers as a boolean": ({"url": "{media}jfk.flac", "num_speakers": True}, "num_speakers must be a whole number"),
    "negative speakers": ({"url": "{media}jfk.flac", "num_speakers": -1}, "between 0 and 100"),
    "absurd speakers": ({"url": "{media}jfk.flac", "max_speakers": 10**12}, "between 0 and 100"),
    "speakers over uint32": ({"url": "{media}jfk.flac", "enable_diarization": True, "num_speakers": 2**32}, "between 0 and 100"),
    "min above max": ({"url": "{media}jfk.flac", "min_speakers": 3, "max_speakers": 2}, "min_speakers cannot be larger"),
    "language as a number": ({"url": "{media}jfk.flac", "language": 5}, "language must be a string"),
    "unknown backend": ({"url": "{media}jfk.flac", "backend": "kaldi"}, "unknown backend 'kaldi'"),
    "backend as a list": ({"url": "{media}jfk.flac", "backend": ["deepgram"]}, "backend must be a string"),
    "unknown task": ({"url": "{media}jfk.flac", "task": "summarise"}, "task must be 'transcribe' or 'translate'"),
    "temperature as a word": ({"url": "{media}jfk.flac", "temperature": "hot"}, "temperature must be"),
    "temperature list of words": ({"url": "{media}jfk.flac", "temperature": ["hot"]}, "temperature must be a number or a list"),
    "VAD parameters as a list": ({"url": "{media}jfk.flac", "vad_parameters": [1]}, "vad_parameters must be an object"),
    "unknown VAD parameter": ({"url": "{media}jfk.flac", "vad_parameters": {"rm -rf": 1}}, "vad_parameters must be an object with"),
    "negative VAD parameter": ({"url": "{media}jfk.flac", "vad_parameters": {"threshold": -1}}, "non-negative"),
    "content id not a hash": ({"content_id": "../../etc/passwd"}, "content_id must be the sha256"),
    "content id as a number": ({"content_id": 7}, "content_id must be a string"),
    # refused before it is buffered: the socket closes with 1009 (message too big)
    "message over the size limit": ({"url": "{media}jfk.flac", "model": MEGABYTE}, 1009),
}


@pytest.mark.parametrize("case", WEBSOCKET_CASES)
async def test_websocket_request_is_refused(system, media, case):
    request, expected = WEBSOCKET_CASES[case]
    frame = request if isinstance(request, str) else json.dumps(request).replace("{media}", media.url(""))
    with Unchanged(system):
        messages = await ws_messages(system.ports.gateway, frame)
    assert not [m for m in messages if m["type"] in ("download_progress", "transcription_chunk")]
    if isinstance(expected, int):
        assert messages == [{"type": "closed", "code": expected}]
        return
    assert messages and messages[-1]["type"] == "error", messages
    assert expected in messages[-1]["error"]
    short_error(messages[-1]["error"])


# Refused by the services after validation in the gateway: they still must not move any audio.
DOWNSTREAM_CASES = {
    "unknown model": ({"model": "no-such-model"}, "model 'no-such-model' is not available"),
    "a path as the model": ({"model": "/etc/passwd"}, "paths are not accepted"),
    "a traversal as the model": ({"model": "../../models/base"}, "is not a model name"),
    "a long model name": ({"model": "m" * 60_000}, "is not a model name"),
    "a language nobody speaks": ({"language": "xx"}, "unknown language 'xx'"),
    "a language spelled out": ({"language": "english"}, "unknown language 'english'"),
    "a language with a path": ({"language": "../../etc"}, "unknown language"),
    "deepgram language not a tag": ({"backend": "deepgram", "language": "en_US!"}, ""),
    "translate on English-only": ({"model": "tiny.en", "task": "translate"}, "English-only"),
}


@pytest.mark.parametrize("case", DOWNSTREAM_CASES)
async def test_request_refused_downstream_reads_no_audio(system, media, case):
    options, expected = DOWNSTREAM_CASES[case]
    url = media.url("jfk.flac")
    await ws_messages(system.ports.gateway, json.dumps({"url": url, "model": "tiny.en"}))  # stored, so no case downloads
    messages = await ws_messages(system.ports.gateway, json.dumps({"url": url, **options}))
    assert messages[-1]["type"] == "error", messages
    assert expected in messages[-1]["error"]
    short_error(messages[-1]["error"])
    assert not [m for m in messages if m["type"] in ("transcription_chunk", "transcription_progress")]


async def test_unknown_fields_are_ignored_with_a_warning(system, media):
    messages = await ws_messages(system.ports.gateway, json.dumps({"url": media.url("jfk.flac"), "model": "tiny.en", "modle": "base"}))
    warnings = [m for m in messages if m["type"] == "warning"]
    assert warnings and warnings[0]["code"] == "unknown_fields" and "modle" in warnings[0]["message"]
    assert messages[-1]["type"] == "complete"


async def test_a_second_job_on_a_busy_socket_is_refused_and_the_first_goes_on(system, media):
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{system.ports.gateway}/ws/transcribe") as ws:
        await ws.send(json.dumps({"url": media.url("jfk.flac"), "model": "tiny.en"}))
        await ws.send(json.dumps({"url": media.url("jfk.flac")}))
        messages = []
        while not messages or messages[-1]["type"] != "complete":
            messages.append(json.loads(await ws.recv()))
            assert messages[-1]["type"] != "error" or "already running" in messages[-1]["error"], messages[-1]
    assert any("already running" in m.get("error", "") for m in messages)


# -- REST, uploads and the OpenAI-compatible API ------------------------------------------------

JSON = {"Content-Type": "application/json"}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None = None) -> bytes:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()]
    if file is not None:
        parts.append(f'--b\r\nContent-Disposition: form-data; name="file"; filename="{file[0]}"\r\n\r\n'.encode() + file[1] + b"\r\n")
    return b"".join(parts) + b"--b--\r\n"


JFK = JFK_FLAC.read_bytes()
REST_CASES = {
    "video-info: not JSON": ("POST", "/api/video-info", b"{url:", JSON, 400, "the body must be JSON"),
    "video-info: a list": ("POST", "/api/video-info", b'["http://a.test/"]', JSON, 400, "the body must be a JSON object"),
    "video-info: no URL": ("POST", "/api/video-info", b"{}", JSON, 400, "URL is required"),
    "video-info: URL as a number": ("POST", "/api/video-info", b'{"url": 5}', JSON, 400, "url must be a string"),
    "video-info: scheme": ("POST", "/api/video-info", b'{"url": "file:///etc/passwd"}', JSON, 400, "unsupported URL scheme 'file'"),
    "video-info: a megabyte": ("POST", "/api/video-info", json.dumps({"url": MEGABYTE}).encode(), JSON, 413, "larger than"),
    "upload: empty": ("POST", "/api/upload?filename=a.wav", b"", {}, 400, "empty"),
    "upload: text": ("POST", "/api/upload?filename=a.wav", b"hello, this is not audio\n" * 40, {}, 400, ""),
    "openai: not multipart": ("POST", "/v1/audio/transcriptions", b'{"model": "whisper-1"}', JSON, 400, ""),
    "openai: no file": ("POST", "/v1/audio/transcriptions", multipart({"model": "whisper-1"}), MULTIPART, 400, "file"),
    "openai: empty file": ("POST", "/v1/audio/transcriptions", multipart({"model": "whisper-1"}, ("a.wav", b"")), MULTIPART, 400, ""),
    "openai: unknown model": (
        "POST",
        "/v1/audio/transcriptions",
        multipart({"model": "no-such-model"}, ("jfk.flac", JFK)),
        MULTIPART,
        400,
        "no-such-model",
    ),
    "openai: response format": (
        "POST",
        "/v1/audio/transcriptions",
        multipart({"model": "tiny.en", "response_format": "docx"}, ("jfk.flac", JFK)),
        MULTIPART,
        400,
        "response_format",
    ),
    "openai: temperature as a word": (
        "POST",
        "/v1/audio/transcriptions",
        multipart({"model": "tiny.en", "temperature": "hot"}, ("jfk.flac", JFK)),
        MULTIPART,
        400,
        "temperature",
    ),
    "openai: language": (
        "POST",
        "/v1/audio/transcriptions",
        multipart({"model": "tiny.en", "language": "klingon"}, ("jfk.flac", JFK)),
        MULTIPART,
        400,
        "unknown language",
    ),
    "openai: granularity": (
        "POST",
        "/v1/audio/transcriptions",
        multipart({"model": "tiny.en", "timestamp_granularities[]": "phoneme"}, ("jfk.flac", JFK)),
        MULTIPART,
        400,
        "unknown timestamp granularity",
    ),
    "cache clear: GET": ("GET", "/api/cache/clear", None, {}, 405, "Method Not Allowed"),
    "models: POST": ("POST", "/api/models", b"{}", JSON, 405, "Method Not Allowed"),
    "no such endpoint": ("GET", "/api/nothing-here", None, {}, 404, "Not Found"),
    "no such static file": ("GET", "/static/../../etc/passwd", None, {}, 404, "Not Found"),
}


@pytest.mark.parametrize("case", REST_CASES)
def test_rest_request_is_refused_with_a_json_body(system, case):
    method, path, body, headers, status, expected = REST_CASES[case]
    with Unchanged(system):
        got, response_headers, reply = call(system.ports.gateway, method, path, body, headers)
    assert got == status, (got, reply[:500])
    assert response_headers["content-type"].startswith("application/json"), response_headers
    error = json.loads(reply)["error"]
    message = error["message"] if isinstance(error, dict) else error  # the OpenAI API nests its errors
    assert expected in message
    short_error(message)


# -- each gRPC service called directly ------------------------------------------------------------


def _stub(system, name: str, stub_class):
    return stub_class(grpc.aio.insecure_channel(f"127.0.0.1:{getattr(system.ports, name)}"))


async def _status(call_) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        result = call_()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    return caught.value


INVALID = grpc.StatusCode.INVALID_ARGUMENT
GRPC_CASES = {
    # downloader
    "Fetch: no URL": ("downloader", lambda s: s.Fetch(downloader_pb2.FetchRequest(url="")), INVALID, "URL is required"),
    "Fetch: a megabyte URL": (
        "downloader",
        lambda s: s.Fetch(downloader_pb2.FetchRequest(url="http://a.test/" + "a" * 20_000)),
        INVALID,
        "at most 8,192 are accepted",
    ),
    "Fetch: javascript": ("downloader", lambda s: s.Fetch(downloader_pb2.FetchRequest(url="javascript:alert(1)")), INVALID, "scheme"),
    "ReadAudio: traversal": (
        "downloader",
        lambda s: s.ReadAudio(downloader_pb2.ReadAudioRequest(content_id="../../../etc/passwd")),
        INVALID,
        "sha256",
    ),
    "ReadAudio: unknown id": (
        "downloader",
        lambda s: s.ReadAudio(downloader_pb2.ReadAudioRequest(content_id=NO_AUDIO)),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
    "ReadAudio: reversed range": (
        "downloader",
        lambda s: s.ReadAudio(
            downloader_pb2.ReadAudioRequest(content_id=NO_AUDIO, form=downloader_pb2.AUDIO_FORM_CANONICAL, start_seconds=5, end_seconds=1)
        ),
        INVALID,
        "",
    ),
    "ReadAudio: negative range": (
        "downloader",
        lambda s: s.ReadAudio(
            downloader_pb2.ReadAudioRequest(content_id=NO_AUDIO, form=downloader_pb2.AUDIO_FORM_CANONICAL, start_seconds=-3)
        ),
        INVALID,
        "",
    ),
    "Upload: nothing": ("downloader", lambda s: s.Upload(iter(())), INVALID, "empty"),
    # ASR
    "Transcribe: no audio": ("asr", lambda s: s.Transcribe(asr_pb2.TranscribeRequest()), INVALID, ""),
    "Transcribe: traversal id": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=common_pb2.AudioRef(content_id="../../x"))),
        INVALID,
        "sha256",
    ),
    "Transcribe: language": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(NO_AUDIO), options=asr_pb2.TranscribeOptions(language="zz"))),
        INVALID,
        "unknown language 'zz'",
    ),
    "Transcribe: a megabyte prompt": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(NO_AUDIO), options=asr_pb2.TranscribeOptions(model=MEGABYTE))),
        INVALID,
        "is not a model name",
    ),
    "Transcribe: temperature": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(NO_AUDIO), options=asr_pb2.TranscribeOptions(temperatures=[7]))),
        INVALID,
        "temperatures",
    ),
    "Transcribe: time range": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(NO_AUDIO), start_seconds=9, end_seconds=3)),
        INVALID,
        "time range",
    ),
    "Transcribe: inline audio over the limit": (
        "asr",
        lambda s: s.Transcribe(asr_pb2.TranscribeRequest(audio=audio_ref(b"\0" * (70 * 1024 * 1024)))),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
    "LoadModel: a path": ("asr", lambda s: s.LoadModel(asr_pb2.ModelRequest(name="/etc/passwd")), INVALID, "paths are not accepted"),
    "UnloadModel: unknown": ("asr", lambda s: s.UnloadModel(asr_pb2.ModelRequest(name="no-such")), INVALID, "not available"),
    # diarizer
    "Diarize: no audio": ("diarizer", lambda s: s.Diarize(diarizer_pb2.DiarizeRequest()), INVALID, ""),
    "Diarize: traversal id": (
        "diarizer",
        lambda s: s.Diarize(diarizer_pb2.DiarizeRequest(audio=common_pb2.AudioRef(content_id="..%2F..%2Fx"))),
        INVALID,
        "sha256",
    ),
    "Diarize: min above max": (
        "diarizer",
        lambda s: s.Diarize(
            diarizer_pb2.DiarizeRequest(audio=audio_ref(NO_AUDIO), options=diarizer_pb2.DiarizeOptions(min_speakers=5, max_speakers=2))
        ),
        INVALID,
        "",
    ),
    "Diarize: absurd count": (
        "diarizer",
        lambda s: s.Diarize(
            diarizer_pb2.DiarizeRequest(audio=audio_ref(NO_AUDIO), options=diarizer_pb2.DiarizeOptions(num_speakers=10**9))
        ),
        INVALID,
        "",
    ),
}
STUBS = {"downloader": downloader_pb2_grpc.DownloaderStub, "asr": asr_pb2_grpc.AsrStub, "diarizer": diarizer_pb2_grpc.DiarizerStub}


@pytest.mark.parametrize("case", GRPC_CASES)
async def test_grpc_request_is_refused_with_a_status(system, case):
    service, make_call, code, expected = GRPC_CASES[case]
    stub = _stub(system, service, STUBS[service])
    with Unchanged(system):
        error = await _status(lambda: make_call(stub))
    assert error.code() == code, (error.code(), error.details())
    assert expected in (error.details() or "")
    short_error(error.details() or "")
