"""Faults in every service, met by a user's job on the gateway's WebSocket.

A service killed mid-job, a service that accepts connections but never answers,
an audio store with no room left, an origin that stalls or drips: each time the
client is told what went wrong within a bounded wait, the gateway keeps no task
or thread of the job, and the stores hold only whole entries.

Killing happens on a system of this module's own (`victims`), never on the
session's; its downloader has short timeouts, so stalled origins end in seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import (
    JFK_FLAC,
    NETGUARD,
    SAMPLE_WAV,
    call,
    free_port,
    fresh_copy,
    scrape,
    start_gateway,
    value,
    ws_job,
)
from transcription import errors
from transcription.clients import DownloaderClient
from transcription.files import sha256_file
from transcription.launcher import Ports, ServiceGroup

READ_TIMEOUT_SECONDS = 3  # the victims' downloader gives up on an origin silent this long
MIN_BYTES_PER_SECOND = 20_000  # ... or slower than this over a second
CONNECT_TIMEOUT_SECONDS = 1  # gateways in front of a black hole give up on a connection this soon (per attempt)
JOB_TIMEOUT = 180  # no job in this module may keep its socket open longer


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    """All four services, of this module alone: they get killed."""
    data = tmp_path_factory.mktemp("victims")
    group = ServiceGroup(
        Ports(free_port(), free_port(), free_port(), free_port()),
        env={
            "DATA_DIR": str(data),
            "PYTHONPATH": str(NETGUARD),
            "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "DOWNLOADER_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS),
            "DOWNLOADER_MIN_BYTES_PER_SECOND": str(MIN_BYTES_PER_SECOND),
            "DOWNLOADER_RATE_WINDOW_SECONDS": "1",
            "DOWNLOADER_RETRIES": "0",
            "HF_HUB_OFFLINE": "1",
            "DIARIZER_PRELOAD": "false",  # restarts come up at once; the first diarization loads the pipeline
            "GRPC_GRACE_SECONDS": "2",
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
        },
        log_dir=data / "logs",
    )
    group.data_dir = data
    group.start(timeout=300)
    yield group
    group.stop()


# -- what must hold after every fault -------------------------------------------------


def gateway_load(port: int) -> tuple[float, float]:
    """(asyncio tasks, threads) of the gateway on ``port``."""
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    return value(samples, "transcription_gateway_tasks"), value(samples, "transcription_gateway_threads")


def assert_back_to(port: int, before: tuple[float, float]) -> None:
    """The gateway's tasks and threads return to ``before`` (its socket's close ends a moment after the last message)."""
    deadline = time.monotonic() + 20
    while (now := gateway_load(port)) != before:
        assert time.monotonic() < deadline, f"the job left tasks or threads behind: (tasks, threads) {now}, before it {before}"
        time.sleep(0.1)


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=15) as response:
        return json.loads(response.read())


def assert_healthy(port: int) -> None:
    """The gateway finds every service SERVING: at once, or (a service just restarted) once its channel has reconnected."""
    deadline = time.monotonic() + 30  # the channels' reconnect backoff is at most 5 s
    while (status := health(port))["status"] != "healthy":
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


def assert_stores_whole(data_dir: Path) -> None:
    """Every audio entry is whole and hashes to its id; every cached result parses; nothing half-written lies around."""
    store = data_dir / "downloads"
    assert not any((store / "tmp").iterdir()), f"partial files left: {list((store / 'tmp').iterdir())}"
    audio = store / "audio"
    records = {path.stem: json.loads(path.read_text()) for path in audio.glob("*.json")}
    assert records, "the store kept nothing"
    assert {path.name.split(".", 1)[0] for path in audio.iterdir()} == set(records), "files of an incomplete entry"
    for content_id, record in records.items():
        assert sha256_file(audio / content_id) == content_id
        canonical = (audio / f"{content_id}.pcm").stat().st_size
        assert canonical == record["canonical_size_bytes"] == pytest.approx(record["duration_seconds"] * 32_000, rel=0.01)
    for results in (store / "urls", data_dir / "transcripts", data_dir / "diarizations"):
        assert not list(results.glob(".tmp-*")), f"half-written results in {results}"
        for path in results.glob("*.json"):
            assert isinstance(json.loads(path.read_text()), dict), path


@dataclass
class KillOn:
    """An ``on_message`` for `ws_job`: SIGKILL service ``name`` at the first message where ``moment(message)`` holds."""

    group: ServiceGroup
    name: str
    moment: Callable[[dict], bool]
    load: tuple[float, float] | None = None  # the gateway's (tasks, threads) mid-job, just before the kill

    def __call__(self, message: dict) -> None:
        if self.load is None and self.moment(message):
            self.load = gateway_load(self.group.ports.gateway)
            self.group.processes[self.name].kill()
            self.group.processes[self.name].wait()


def assert_recovers(group: ServiceGroup, name: str, kill: KillOn, before: tuple[float, float]) -> None:
    """After the job: the gateway holds nothing of it; the killed service, started again, finds its stores whole."""
    assert kill.load is not None and kill.load[0] > before[0], f"the job's tasks do not show: {kill.load}, before {before}"
    assert_back_to(group.ports.gateway, before)
    group.restart(name)
    assert_stores_whole(group.data_dir)
    assert_healthy(group.ports.gateway)


# -- 1. a service killed mid-job ------------------------------------------------------------


async def test_downloader_killed_mid_download(victims, media):
    async with DownloaderClient(f"127.0.0.1:{victims.ports.downloader}") as client:  # one whole entry, which must survive
        [event async for event in client.fetch(media.url("sample.wav"))]
    name = "faults-gated.flac"
    (media.directory / name).symlink_to(JFK_FLAC)
    before = gateway_load(victims.ports.gateway)
    kill = KillOn(victims, "downloader", lambda m: m["type"] == "download_progress" and m["downloaded"] > 0)
    try:  # the origin sends half the file, then holds the rest back: the kill lands mid-download
        received = await ws_job(victims, {"url": media.url(f"gated/{name}"), "model": "tiny.en"}, JOB_TIMEOUT, kill)
    finally:
        media.open_gate(f"gated/{name}")
    last = received.messages[-1]
    assert last["type"] == "error" and last["error"].startswith("the connection to the downloader service failed"), last
    assert any((victims.data_dir / "downloads" / "tmp").iterdir()), "the killed downloader left its partial download"
    assert_recovers(victims, "downloader", kill, before)


async def test_asr_killed_mid_transcription(victims, media):
    before = gateway_load(victims.ports.gateway)
    kill = KillOn(victims, "asr", lambda m: m["type"] == "transcription_chunk")
    request = {"url": media.url("ami-2min.wav"), "model": "tiny.en", "language": "en"}
    received = await ws_job(victims, request, JOB_TIMEOUT, kill)
    last = received.messages[-1]
    assert last["type"] == "error" and last["error"] == "the ASR service is unavailable", last  # after calling it again
    assert_recovers(victims, "asr", kill, before)


async def test_diarizer_killed_mid_diarization_leaves_the_transcript_without_speakers(victims, media):
    before = gateway_load(victims.ports.gateway)
    # past "decoding": the pipeline is at work on the audio
    kill = KillOn(victims, "diarizer", lambda m: m["type"] == "diarization_progress" and m["stage"] != "decoding")
    request = {"url": media.url("ami-2min.wav"), "model": "tiny.en", "language": "en", "enable_diarization": True}
    received = await ws_job(victims, request, JOB_TIMEOUT, kill)
    last = received.messages[-1]
    assert last["type"] == "complete" and last["num_speakers"] is None, last
    (warning,) = received.of("warning")
    assert warning["code"] == "diarization_failed" and "the connection to the diarizer service failed" in warning["message"], warning
    assert not received.of("speaker_update")
    assert max(c["end"] for c in received.of("transcription_chunk")) > 90, "the whole file was transcribed"
    assert_recovers(victims, "diarizer", kill, before)


# -- 2. a service that accepts connections and never answers ------------------------------------


@pytest.fixture
def black_hole():
    """host:port of a TCP listener on loopback that accepts every connection, then neither reads nor writes."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("service, named", [("downloader", "downloader"), ("asr", "ASR"), ("diarizer", "diarizer")])
async def test_a_service_that_never_answers_is_given_up_on_and_named(victims, media, black_hole, service, named):
    process, port = start_gateway(
        victims, **{f"{service.upper()}_ADDR": black_hole, "GATEWAY_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS)}
    )
    try:
        before = gateway_load(port)
        request = {"url": media.url("jfk.flac"), "model": "tiny.en", "enable_diarization": service == "diarizer"}
        # /health answers (within its own 2-second probes) while the job waits on the black hole
        status, received = await asyncio.gather(asyncio.to_thread(health, port), ws_job(port, request, JOB_TIMEOUT))
        assert_back_to(port, before)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert status["status"] == "degraded" and status["services"][service] != "SERVING", status
    assert {name for name, state in status["services"].items() if state == "SERVING"} == {"downloader", "asr", "diarizer"} - {service}
    last = received.messages[-1]
    expected = f"the {named} service did not answer within {CONNECT_TIMEOUT_SECONDS} s"
    if service == "diarizer":  # speakers are extra: the transcript still comes, with the reason they are missing
        assert last["type"] == "complete", last
        (warning,) = received.of("warning")
        assert warning["code"] == "diarization_failed" and expected in warning["message"], warning
    else:
        assert last["type"] == "error" and expected in last["error"], last


def test_rest_calls_give_up_on_a_service_that_never_answers_and_name_it(victims, black_hole):
    process, port = start_gateway(
        victims, DOWNLOADER_ADDR=black_hole, ASR_ADDR=black_hole, GATEWAY_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_SECONDS)
    )
    boundary = "b"
    upload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="jfk.flac"\r\n\r\n'.encode()
        + JFK_FLAC.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    cases = [
        ("POST", "/api/video-info", b'{"url": "http://media.test/a.wav"}', {"Content-Type": "application/json"}, "downloader"),
        ("GET", "/v1/models", None, {}, "ASR"),
        ("POST", "/v1/audio/transcriptions", upload, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, "downloader"),
    ]
    try:
        for method, path, body, headers, named in cases:
            status, _, answer = call(port, method, path, body, headers)
            # without the connect timeout gRPC holds the call for about 20 s, then fails naming no service
            assert status == 503, (path, status, answer)
            error = json.loads(answer)["error"]  # the OpenAI-compatible routes answer in OpenAI's shape
            message = error["message"] if path.startswith("/v1/") else error
            assert f"the {named} service did not answer within {CONNECT_TIMEOUT_SECONDS} s" in message, answer
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- 3. no room left in the audio store -------------------------------------------------------------


async def test_a_full_audio_store_is_a_clear_error_and_keeps_nothing(victims, media):
    url = fresh_copy(media, SAMPLE_WAV, "faults-no-room.wav", seed=3)
    size = (media.directory / "faults-no-room.wav").stat().st_size
    downloader = victims.processes["downloader"].pid
    limit = resource.prlimit(downloader, resource.RLIMIT_FSIZE)
    store = victims.data_dir / "downloads"
    # no file of the downloader may grow past a third of this download: its writes fail with EFBIG, as on a full disk
    resource.prlimit(downloader, resource.RLIMIT_FSIZE, (size // 3, limit[1]))
    try:
        received = await ws_job(victims, {"url": url, "model": "tiny.en"}, JOB_TIMEOUT)
        async with DownloaderClient(f"127.0.0.1:{victims.ports.downloader}") as client:
            with pytest.raises(errors.ResourceExhausted, match="the audio store is full"):
                [event async for event in client.fetch(url)]
            assert await client.health() == "SERVING"
    finally:
        resource.prlimit(downloader, resource.RLIMIT_FSIZE, limit)
    last = received.messages[-1]
    assert last["type"] == "error" and last["error"].startswith("the audio store is full: cannot write"), last
    content_id = sha256_file(media.directory / "faults-no-room.wav")
    assert not list((store / "audio").glob(f"{content_id}*")), "nothing of it was stored"
    assert_stores_whole(victims.data_dir)  # (the partial download was removed from tmp/ too)

    again = await ws_job(victims, {"url": url, "model": "tiny.en"}, JOB_TIMEOUT)  # room again: the same fetch goes through
    assert again.messages[-1]["type"] == "complete", again.messages[-1]
    assert (store / "audio" / content_id).exists()


# -- 4. origins that stall or drip ----------------------------------------------------------------


class _SlowOrigin(BaseHTTPRequestHandler):
    """``/stall.wav``: the headers, then nothing; ``/drip.wav``: 50 bytes every 50 ms (1 kB/s)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self):
        body = SAMPLE_WAV.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        try:
            if self.path == "/stall.wav":
                self.server.released.wait(60)
            for start in range(0, len(body), 50):
                self.wfile.write(body[start : start + 50])
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):  # the downloader gave up: as it should
            pass


@pytest.fixture(scope="module")
def slow_origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowOrigin)
    server.released = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.released.set()
    server.shutdown()


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/stall.wav", f"no data for {READ_TIMEOUT_SECONDS} s after 0 bytes"),
        ("/drip.wav", "the download is too slow"),
    ],
)
async def test_a_stalled_or_dripping_origin_is_given_up_on(victims, slow_origin, path, reason):
    before = gateway_load(victims.ports.gateway)
    received = await ws_job(victims, {"url": slow_origin + path, "model": "tiny.en"}, JOB_TIMEOUT)
    last = received.messages[-1]
    assert last["type"] == "error" and reason in last["error"], last
    assert not any((victims.data_dir / "downloads" / "tmp").iterdir()), "the partial download was removed"
    assert_back_to(victims.ports.gateway, before)
    assert_healthy(victims.ports.gateway)
