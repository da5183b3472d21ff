"""Media routes: uploads into the downloader's store, audio for the player, transcript exports.

* ``POST /api/upload?filename=<name>`` — the request body is the file (what
  ``fetch(url, {method: "POST", body: file})`` sends): streamed to the
  downloader's ``Upload`` (client streaming, 1 MiB messages), never held whole;
  refused with 413 past ``GATEWAY_MAX_UPLOAD_BYTES``. Answers the content id a
  WebSocket job then names (``{"content_id": ...}`` instead of ``url``). The
  store names the file by its content id; the client's name is only echoed,
  made safe first (`security.safe_filename`).
* ``GET /api/audio/<content_id>.wav`` — the canonical form (16 kHz mono PCM)
  behind a 44-byte WAV header, with HTTP Range, so every browser can play and
  seek it whatever the original's container.
* ``GET /api/transcripts/<job_id>.<format>`` — a finished transcript as SRT,
  WebVTT, text, JSON or TSV (exports.py), kept for the last
  ``GATEWAY_TRANSCRIPTS_KEPT`` jobs, named after the job's title: an ASCII
  ``filename`` and, for a title in another script, the real name in
  ``filename*`` (RFC 6266; a header cannot carry it otherwise).
"""

from __future__ import annotations

import asyncio
import re
import struct
import unicodedata
import urllib.parse

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from transcription import errors
from transcription.gateway import exports, state
from transcription.gateway.jobs import CONTENT_ID
from transcription.gateway.security import safe_filename

WAV_HEADER_BYTES = 44
SAMPLE_RATE = 16_000


def wav_header(pcm_bytes: int) -> bytes:
    """RIFF header of a 16 kHz mono 16-bit PCM file holding ``pcm_bytes`` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + pcm_bytes, b"WAVE", b"fmt ", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16, b"data", pcm_bytes
    )


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (first, last); None without a header.

    Raises ``ValueError`` for a range this resource cannot satisfy (answered 416).
    Several ranges in one header are answered with the first (browsers send one).
    """
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*(,.*)?", header)
    if not match or not (match.group(1) or match.group(2)):
        raise ValueError(header)
    first_text, last_text = match.group(1), match.group(2)
    if not first_text:  # the last n bytes
        first, last = max(0, total - int(last_text)), total - 1
    else:
        first, last = int(first_text), min(int(last_text), total - 1) if last_text else total - 1
    if first >= total or first > last:
        raise ValueError(header)
    return first, last


def upload_too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"the file is larger than the {limit}-byte upload limit")


async def upload(request: Request):
    limit = state.settings(request).gateway_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise upload_too_large(limit)
    state.limit_rate(request)
    filename = safe_filename(request.query_params.get("filename") or "", default="upload")
    too_large = False

    async def blocks():
        nonlocal too_large
        received = 0
        async for block in request.stream():
            received += len(block)
            if received > limit:
                too_large = True
                raise upload_too_large(limit)
            if block:
                yield block

    try:
        ready = await state.clients(request).downloader.upload(blocks(), filename)
    except (errors.ServiceError, asyncio.CancelledError):
        # grpc cancels the call when the request stream raises: say why, not what gRPC made of it
        if too_large:
            raise upload_too_large(limit) from None
        raise
    if too_large:
        raise upload_too_large(limit)
    return JSONResponse(
        {
            "content_id": ready.content_id,
            "filename": filename,
            "duration": ready.duration_seconds,
            "size_bytes": ready.size_bytes,
            "format": ready.format,
        }
    )


async def audio(request: Request):
    content_id = request.path_params["content_id"]
    if not CONTENT_ID.fullmatch(content_id):
        raise errors.InvalidArgument("not a content id")
    downloader = state.clients(request).downloader
    pcm_bytes = await downloader.canonical_size(content_id)
    total = WAV_HEADER_BYTES + pcm_bytes
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=86400"}  # content-addressed: never changes
    try:
        wanted = parse_range(request.headers.get("range"), total)
    except ValueError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{total}"})
    start, end = wanted or (0, total - 1)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    headers["Content-Length"] = str(end - start + 1)

    async def body():
        position = start
        if position < WAV_HEADER_BYTES:
            yield wav_header(pcm_bytes)[position : end + 1]
            position = WAV_HEADER_BYTES
        if position <= end:
            offset, length = position - WAV_HEADER_BYTES, end + 1 - position
            async for chunk in downloader.iter_audio(content_id, canonical=True, offset=offset, length=length, chunk_size=1024 * 1024):
                yield chunk.data

    if request.method == "HEAD":
        return Response(status_code=206 if wanted else 200, headers=headers, media_type="audio/wav")
    return StreamingResponse(body(), status_code=206 if wanted else 200, headers=headers, media_type="audio/wav")


async def export(request: Request):
    job_id, fmt = request.path_params["job_id"], request.path_params["fmt"]
    transcript = state.shared(request).transcripts.get(job_id)
    if transcript is None:
        raise errors.NotFound("no finished transcript with this id (only recent ones are kept)")
    try:
        body, media_type = exports.render(fmt, transcript)
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc)) from None
    name = safe_filename(transcript.title)[:80].rstrip(". ") or "transcript"
    return Response(body, media_type=media_type, headers={"Content-Disposition": attachment(name, fmt)})


def attachment(name: str, extension: str) -> str:
    """A Content-Disposition for a download ``<name>.<extension>`` (``name`` made safe already), in any script.

    Header values are Latin-1: a name in another script goes in ``filename*`` (UTF-8, percent-encoded),
    with an ASCII approximation in ``filename`` for clients that read only that.
    """
    ascii_name = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode())
    if ascii_name == name:
        return f'attachment; filename="{name}.{extension}"'
    fallback = ascii_name.strip("_. ") or "transcript"
    return f"attachment; filename=\"{fallback}.{extension}\"; filename*=UTF-8''{urllib.parse.quote(f'{name}.{extension}', safe='')}"
