"""OpenAI-compatible speech-to-text: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``.

So that tools written for OpenAI's API (its SDKs, with ``base_url`` pointed
here) run against this platform: multipart ``file``, ``model``, ``language``,
``prompt``, ``response_format`` (json, text, srt, verbose_json, vtt),
``timestamp_granularities[]`` (segment, word) and ``temperature`` (0, the
default, means the fallback ladder as at OpenAI). The file is
streamed to the downloader's store as an upload, then transcribed by the ASR
service; the answer is shaped by exports.py. ``model`` names a model of this
platform (``GET /v1/models`` lists them); OpenAI's ``whisper-1`` means the
default model. Errors come in OpenAI's error shape.
"""

from __future__ import annotations

import time

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from transcription import errors
from transcription.gateway import exports, state
from transcription.gateway.jobs import segment_json
from transcription.gateway.media import upload_too_large
from transcription.v1 import asr_pb2

OPENAI_DEFAULT_MODELS = {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"}
READ_BLOCK = 1024 * 1024


async def transcriptions(request: Request):
    return await _transcribe(request, task="transcribe")


async def translations(request: Request):
    return await _transcribe(request, task="translate")


async def list_models(request: Request):
    asr = await state.connected(request, state.clients(request).asr)
    reply = await asr.list_models()
    created = int(time.time())
    return JSONResponse(
        {
            "object": "list",
            "data": [{"id": m.name, "object": "model", "created": created, "owned_by": "transcription-platform"} for m in reply.models],
        }
    )


async def _transcribe(request: Request, task: str):
    limit = state.settings(request).gateway_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:  # the file plus its form fields
        raise upload_too_large(limit)
    state.limit_rate(request)
    async with request.form(max_files=1, max_fields=32) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise errors.InvalidArgument("a multipart field 'file' with the audio is required")
        if upload.size is not None and upload.size > limit:
            raise upload_too_large(limit)
        response_format = str(form.get("response_format") or "json")
        granularities = [str(g) for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")]
        if unknown := set(granularities) - {"segment", "word"}:
            raise errors.InvalidArgument(f"unknown timestamp granularity {sorted(unknown)}: use 'segment' or 'word'")
        model = str(form.get("model") or "")
        try:
            temperature = float(form.get("temperature") or 0)
        except ValueError:
            raise errors.InvalidArgument("temperature must be a number") from None
        options = asr_pb2.TranscribeOptions(
            model="" if model in OPENAI_DEFAULT_MODELS else model,
            language=str(form.get("language") or "") if task == "transcribe" else "",
            task=asr_pb2.TASK_TRANSLATE if task == "translate" else asr_pb2.TASK_TRANSCRIBE,
            initial_prompt=str(form.get("prompt") or ""),
            word_timestamps="word" in granularities,
            temperatures=[temperature] if temperature else [],
        )
        if response_format not in exports.OPENAI_RESPONSE_FORMATS:
            raise errors.InvalidArgument(f"response_format must be one of {', '.join(exports.OPENAI_RESPONSE_FORMATS)}")

        async def blocks():
            while block := await upload.read(READ_BLOCK):
                yield block

        downloader = await state.connected(request, state.clients(request).downloader)
        ready = await downloader.upload(blocks(), upload.filename or "upload")
    transcript = await _collect(request, ready.content_id, options)
    transcript.title = upload.filename or ""
    body, media_type = exports.openai_response(response_format, transcript, timestamp_granularities=granularities, task=task)
    if isinstance(body, dict):
        return JSONResponse(body, media_type=media_type)
    return PlainTextResponse(body, media_type=media_type)


async def _collect(request: Request, content_id: str, options: asr_pb2.TranscribeOptions) -> exports.Transcript:
    transcript = exports.Transcript(segments=[])
    asr = await state.connected(request, state.clients(request).asr)
    async for event in asr.transcribe(content_id, options):
        kind = event.WhichOneof("event")
        if kind == "started":
            transcript.language = event.started.language
            transcript.duration = event.started.duration_seconds
        elif kind == "segment":
            transcript.segments.append(segment_json(event.segment))
        elif kind == "completed":
            transcript.duration = transcript.duration or event.completed.audio_seconds
    return transcript
