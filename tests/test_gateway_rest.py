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


def test_gpu_reports_what_the_asr_service_uses(system):
    """ASR_DEVICE=auto: CUDA with float16 where CTranslate2 sees a GPU, else CPU with int8."""
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()  # asked here, independently of the service
    status, body = call(system, "/gpu")
    assert status == 200
    assert body["gpu_available"] is (gpus > 0)
    assert body["gpu_count"] == gpus
    assert body["device"] == ("cuda" if gpus else "cpu")
    assert body["compute_type"] == ("float16" if gpus else "int8")
    if not gpus:
        assert body["gpu_name"] is None and body["cuda_version"] is None and body["gpu_memory_total_bytes"] == 0


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


async def test_models_listed_are_the_models_that_load(system, media):
    """Every model /api/models calls available transcribes, and its multilingual flag is the model's own."""
    import ctranslate2

    from conftest import JFK_TEXT, wer, ws_job

    status, body = call(system, "/api/models")
    assert status == 200
    by_source = {m["name"]: m["source"] for m in body["models"]}
    assert by_source["org/no-such-model"] == "hub", "allow-listed hub names are offered"
    available = [m for m in body["models"] if m["available"] and m["source"] in ("bundled", "local")]  # on disk: loadable offline
    assert body["default_model"] in {m["name"] for m in available}
    assert {"base", "tiny.en"} <= {m["name"] for m in available}, "the bundled models must be offered offline"
    for model in available:
        received = await ws_job(system, {"url": media.url("jfk.flac"), "model": model["name"], "enable_diarization": False})
        assert received.messages[-1]["type"] == "complete", (model, received.messages[-1])
        text = " ".join(c["text"] for c in received.of("transcription_chunk"))
        assert wer(JFK_TEXT, text) <= 0.1, (model["name"], text)
        directory = system.data_dir / "models" / model["source"] / model["name"]
        assert ctranslate2.models.Whisper(str(directory), device="cpu").is_multilingual == model["multilingual"], model
        assert (len(model["languages"]) > 90) is model["multilingual"] and model["size_bytes"] > 30e6


async def test_cache_stats_and_clear(system, media):
    from conftest import JFK_TEXT, wer, ws_job

    first = await ws_job(system, {"url": media.url("jfk.flac"), "model": "tiny.en"})
    assert first.messages[-1]["type"] == "complete", first.messages[-1]
    assert wer(JFK_TEXT, " ".join(c["text"] for c in first.of("transcription_chunk"))) <= 0.1
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
