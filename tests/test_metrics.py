"""Every service exports Prometheus metrics that move with the work done."""

from __future__ import annotations

from conftest import JFK_FLAC, fresh_copy, scrape, value, ws_job


async def test_metrics_count_a_job_in_every_service(system, media):
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in system.metrics_ports.items()}
    urls["gateway"] = f"{system.url}metrics"
    before = {name: scrape(url) for name, url in urls.items()}
    url = fresh_copy(media, JFK_FLAC, "metrics-jfk.wav", seed=12345)
    received = await ws_job(system, {"url": url, "model": "tiny.en", "enable_diarization": True})
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    after = {name: scrape(url) for name, url in urls.items()}

    def grew(exporter: str, name: str, **labels) -> float:
        return value(after[exporter], name, **labels) - value(before[exporter], name, **labels)

    assert grew("downloader", "transcription_grpc_requests_total", method="Fetch", code="OK") == 1
    assert grew("downloader", "transcription_cache_lookups_total", cache="urls", result="miss") == 1
    assert grew("asr", "transcription_grpc_requests_total", method="Transcribe", code="OK") == 1
    assert grew("asr", "transcription_cache_lookups_total", cache="transcripts", result="miss") == 1
    assert 10 < grew("asr", "transcription_audio_seconds_total", service="asr") < 12  # jfk is 11 s
    assert grew("asr", "transcription_asr_segments_total") >= 1 and grew("asr", "transcription_asr_first_segment_seconds_count") == 1
    assert grew("diarizer", "transcription_grpc_requests_total", method="Diarize", code="OK") == 1
    assert 10 < grew("diarizer", "transcription_audio_seconds_total", service="diarizer") < 12
    assert grew("gateway", "transcription_gateway_jobs_total", outcome="completed") == 1
    for service in ("asr", "diarizer"):
        assert ("transcription_queue_depth", (("service", service),)) in after[service]
        assert value(after[service], "transcription_grpc_in_flight") == 0
    assert value(after["asr"], "transcription_model_load_seconds_count", model="faster-whisper:tiny.en") >= 1

    # an error is counted under its status code
    failed = await ws_job(system, {"url": url, "model": "no-such-model"})
    assert failed.messages[-1]["type"] == "error"
    assert value(scrape(urls["asr"]), "transcription_grpc_requests_total", method="Transcribe", code="INVALID_ARGUMENT") >= 1
