"""The command-line client against the running system, and graceful shutdown."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import grpc

from conftest import JFK_FLAC, NETGUARD, SAMPLE_STM, console_command, free_port, stm_text, wer
from transcription.v1 import downloader_pb2, downloader_pb2_grpc

LINE = re.compile(r"^\[(\d\d:\d\d:\d\d\.\d\d) -> (\d\d:\d\d:\d\d\.\d\d)\] (SPEAKER_\d\d): (.+)$")


def cli(system, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DOWNLOADER_ADDR": f"127.0.0.1:{system.ports.downloader}",
        "ASR_ADDR": f"127.0.0.1:{system.ports.asr}",
        "DIARIZER_ADDR": f"127.0.0.1:{system.ports.diarizer}",
    }
    return subprocess.run([console_command("transcribe"), *args], env=env, capture_output=True, text=True, timeout=300)


def test_cli_prints_speaker_labelled_transcript(system, media):
    result = cli(system, media.url("sample.wav"), "--diarize")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert parsed and all(parsed), result.stdout
    assert len({m.group(3) for m in parsed}) == 2, result.stdout
    assert wer(stm_text(SAMPLE_STM), " ".join(m.group(4) for m in parsed)) <= 0.30


def test_cli_local_file_without_diarization(system):
    result = cli(system, str(JFK_FLAC), "--model", "tiny.en")
    assert result.returncode == 0, result.stderr
    assert "ask not what your country can do for you" in result.stdout.lower()


def test_cli_reports_errors_without_traceback(system):
    result = cli(system, "file:///etc/passwd")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unsupported URL scheme 'file': only http and https URLs can be fetched"


def test_sigterm_lets_an_in_flight_stream_finish(tmp_path, media):
    """SIGTERM lands while a Fetch stream is open; that stream still completes, then the process exits cleanly.

    The origin sends half the file and then waits for the test: the stream
    cannot finish before the server has logged that it is shutting down.
    """
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(tmp_path),
        "DOWNLOADER_PORT": str(port),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "GRPC_GRACE_SECONDS": "60",
    }
    process = subprocess.Popen([console_command("transcription-downloader")], env=env, stderr=subprocess.PIPE, text=True)
    log_lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [log_lines.put(line) for line in process.stderr], daemon=True).start()
    path = f"gated/sigterm-{port}/jfk.flac"
    (media.directory / f"sigterm-{port}").mkdir()
    (media.directory / f"sigterm-{port}" / "jfk.flac").symlink_to(JFK_FLAC)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stream = downloader_pb2_grpc.DownloaderStub(channel).Fetch(downloader_pb2.FetchRequest(url=media.url(path)))
        events: list = []
        reader = threading.Thread(target=lambda: events.extend(stream), daemon=True)
        reader.start()
        wait_for(lambda: media.count(path) == 1, "the download to reach the origin")

        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "shutting down" in log_lines.get(timeout=30), "the server to log its shutdown")
        assert reader.is_alive() and process.poll() is None, "the stream ended before the gate opened"

        media.open_gate(path)
        reader.join(timeout=30)
        assert events and events[-1].HasField("ready"), events
        assert events[-1].ready.size_bytes == JFK_FLAC.stat().st_size
        assert process.wait(timeout=30) == 0
    finally:
        media.open_gate(path)
        if process.poll() is None:
            process.kill()


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_launcher_starts_all_four_and_ctrl_c_stops_them(tmp_path):
    """What `make run` runs: four SERVING services, the UI's URL, a clean stop on SIGINT."""
    ports = {name: free_port() for name in ("DOWNLOADER_PORT", "ASR_PORT", "DIARIZER_PORT", "GATEWAY_PORT")}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
    }
    launcher = subprocess.Popen(
        [console_command("transcription-run")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output = []
        for line in launcher.stdout:
            output.append(line)
            if line.startswith("Ready:") or launcher.poll() is not None:
                break
        text = "".join(output)
        url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}/"
        assert f"Ready: open {url}" in text, text
        assert all(f"{name:<10} SERVING" in text for name in ("downloader", "asr", "diarizer", "gateway")), text
        with urllib.request.urlopen(url + "health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "healthy"

        launcher.send_signal(signal.SIGINT)
        rest = launcher.communicate(timeout=60)[0]
        assert launcher.returncode == 0, rest
        assert "Traceback" not in rest and "Stopped." in rest, rest
        assert not any(port_open(port) for port in ports.values()), "a service outlived the launcher"
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_make_run_shares_the_cores_between_asr_and_diarizer():
    from transcription.launcher import split_cores

    assert split_cores({}, 8) == {"DIARIZER_THREADS": "1", "ASR_CPU_THREADS": "7"}
    assert split_cores({}, 2) == {"DIARIZER_THREADS": "1", "ASR_CPU_THREADS": "1"}
    assert split_cores({}, 1) == {"DIARIZER_THREADS": "1", "ASR_CPU_THREADS": "1"}
    assert split_cores({"DIARIZER_THREADS": "2"}, 8) == {"DIARIZER_THREADS": "2", "ASR_CPU_THREADS": "6"}
    assert split_cores({"ASR_CPU_THREADS": "3"}, 8) == {"DIARIZER_THREADS": "1"}, "a value the user set wins"
