"""The downloader as a process: killed mid-write, and an 8-hour file refused with no service's memory moving."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc

from conftest import JFK_FLAC, NETGUARD, console_command, free_port, silent_flac, ws_job
from transcription.clients import DownloaderClient
from transcription.v1 import downloader_pb2, downloader_pb2_grpc


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_downloader(data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(data_dir),
        "DOWNLOADER_PORT": str(port),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    process = subprocess.Popen([console_command("transcription-downloader")], env=env, stderr=subprocess.DEVNULL)
    grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=60)
    return process


async def test_kill_9_mid_write_leaves_only_whole_entries(tmp_path, media):
    port = free_port()
    process = start_downloader(tmp_path, port)
    store = tmp_path / "downloads"
    gated = f"gated/kill9-{port}/jfk.flac"
    (media.directory / f"kill9-{port}").mkdir()
    (media.directory / f"kill9-{port}" / "jfk.flac").symlink_to(JFK_FLAC)
    try:
        async with DownloaderClient(f"127.0.0.1:{port}") as client:
            [e async for e in client.fetch(media.url("sample.wav"))]  # one whole entry
        stub = downloader_pb2_grpc.DownloaderStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        stream = stub.Fetch(downloader_pb2.FetchRequest(url=media.url(gated)))
        outcome: list = []
        threading.Thread(target=lambda: outcome.append(stream.exception()), daemon=True).start()
        wait_for(lambda: media.count(gated) == 1 and any((store / "tmp").iterdir()), "a download in progress in tmp/")
        time.sleep(0.5)  # the first half is in, the rest held back by the origin
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        wait_for(lambda: outcome, "the stream to fail")
        assert outcome[0].code() == grpc.StatusCode.UNAVAILABLE
    finally:
        media.open_gate(gated)
        if process.poll() is None:
            process.kill()
    assert any((store / "tmp").iterdir()), "the killed process left its partial download"

    process = start_downloader(tmp_path, port)  # restarted on the same store
    try:
        assert not any((store / "tmp").iterdir()), "partial files are swept at start-up"
        originals = [p for p in (store / "audio").iterdir() if "." not in p.name]
        assert originals, "the whole entry survived"
        for original in originals:
            assert hashlib.sha256(original.read_bytes()).hexdigest() == original.name
            assert (store / "audio" / f"{original.name}.pcm").exists() and (store / "audio" / f"{original.name}.json").exists()
        async with DownloaderClient(f"127.0.0.1:{port}") as client:
            events = [e async for e in client.fetch(media.url(gated))]
        assert events[-1].ready.content_id == hashlib.sha256(JFK_FLAC.read_bytes()).hexdigest()
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_eight_hour_file_is_refused_in_seconds_with_no_service_memory_moving(system, media):
    (media.directory / "eight-hours.flac").write_bytes(silent_flac(8 * 3600))
    pids = {name: process.pid for name, process in system.processes.items()}
    before = {name: rss_bytes(pid) for name, pid in pids.items()}
    began = time.monotonic()
    received = await ws_job(system, {"url": media.url("eight-hours.flac"), "enable_diarization": True}, timeout=60)
    elapsed = time.monotonic() - began
    last = received.messages[-1]
    assert last["type"] == "error" and "8 h 00 min long, over the 4 h 00 min limit" in last["error"], received.messages
    assert elapsed < 10
    after = {name: rss_bytes(pid) for name, pid in pids.items()}
    # decoding 8 hours would take 900 MB (float32) or 460 MB (PCM) somewhere; 40 MB allows for allocator noise
    grown = {name: after[name] - before[name] for name in pids}
    assert all(growth < 40 * 1024**2 for growth in grown.values()), grown
    content_id = hashlib.sha256((media.directory / "eight-hours.flac").read_bytes()).hexdigest()
    assert not list((system.data_dir / "downloads" / "audio").glob(f"{content_id}*")), "nothing of it was stored"
