"""The REST endpoints existing browser clients use, against the running system."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def call(system, path: str, body: dict | None = None, method: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        system.url.rstrip("/") + path, data=data, method=method or ("POST" if data else "GET"), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_reports_every_service(system):
    status, body = call(system, "/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["services"] == {"downloader": "SERVING", "asr": "SERVING", "diarizer": "SERVING"}
    assert body["timestamp"]


def test_gpu(system):
    status, body = call(system, "/gpu")
    assert status == 200
    assert body["gpu_available"] in (True, False)
    assert {"gpu_name", "cuda_version"} <= body.keys()


def test_video_info(system, media):
    status, body = call(system, "/api/video-info", {"url": media.url("jfk.flac")})
    assert status == 200, body
    assert body["title"] == "jfk"
    assert {"thumbnail", "duration", "uploader", "view_count", "upload_date", "description"} <= body.keys()


def test_video_info_bad_input_is_4xx_json(system):
    assert call(system, "/api/video-info", {"url": "file:///etc/passwd"})[0] == 400
    assert call(system, "/api/video-info", {})[1] == {"error": "URL is required"}
    request = urllib.request.Request(system.url + "api/video-info", data=b"{oops", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 400 and "error" in json.loads(exc.read())
    else:
        raise AssertionError("malformed JSON was accepted")


def test_models(system):
    status, body = call(system, "/api/models")
    assert status == 200
    names = {m["name"]: m for m in body["models"]}
    assert names["base"]["available"] and names["base"]["multilingual"]
    assert names["tiny.en"]["available"] and not names["tiny.en"]["multilingual"]
    assert body["default_model"] == "base"


async def test_cache_stats_and_clear(system, media):
    from conftest import ws_job

    await ws_job(system, {"url": media.url("jfk.flac"), "model": "tiny.en"})
    status, stats = call(system, "/api/download-cache/stats")
    assert status == 200 and stats["total_files"] >= 1 and stats["metadata_files"] >= 1
    assert stats["total_size_mb"] == round(stats["total_size"] / 1024 / 1024, 2)
    status, tstats = call(system, "/api/cache/stats")
    assert status == 200 and tstats["total_files"] >= 1

    status, cleared = call(system, "/api/cache/clear", method="POST")
    assert status == 200 and cleared["cleared"] is True and cleared["files_deleted"] == tstats["total_files"]
    assert call(system, "/api/cache/stats")[1]["total_files"] == 0

    status, cleared = call(system, "/api/download-cache/clear", method="POST")
    assert status == 200 and cleared["files_deleted"] >= 2
    assert call(system, "/api/download-cache/stats")[1]["total_files"] == 0

    # After clearing, the same URL is downloaded again.
    before = media.count("jfk.flac")
    again = await ws_job(system, {"url": media.url("jfk.flac"), "model": "tiny.en"})
    assert again.messages[-1]["type"] == "complete"
    assert media.count("jfk.flac") == before + 1


def test_ui_is_served_in_hebrew_by_default(system):
    with urllib.request.urlopen(system.url, timeout=10) as response:
        page = response.read().decode()
    assert '<html lang="he" dir="rtl">' in page
    assert "/ws/transcribe" in urllib.request.urlopen(system.url + "static/app.js", timeout=10).read().decode()
