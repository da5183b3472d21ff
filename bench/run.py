"""End-to-end benchmark: audio through the gateway vs faster-whisper in-process, and DER.

Both sides run in the same invocation on the same audio and settings (model
base, int8 on CPU / float16 on CUDA, beam 5, VAD on, language detected), after
one untimed warm-up each, alternating, so the ratio compares like with like on
whatever machine runs it. Each gateway run starts with empty caches, so it
includes the download from a local HTTP server, the gRPC hops and the
WebSocket. Audio: the 30-s sample (one decoding window) and the four AMI debug
clips joined (120 s, four windows, where streaming shows in time to first
segment). Then the diarization error rates of bench/der.py. Writes
bench/RESULTS.md and the tables between the markers in README.md.

    make bench            # or: .venv/bin/python bench/run.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = ROOT / "tests" / "netguard"
sys.path.insert(0, str(NETGUARD))
import loopback_only  # noqa: E402

loopback_only.install()  # like the tests: benchmark traffic stays on loopback

import asr  # noqa: E402  (bench/ is on sys.path: this script runs from it)
import assign  # noqa: E402
import der  # noqa: E402
import downloader  # noqa: E402
import load  # noqa: E402
import numpy as np  # noqa: E402
import scale  # noqa: E402
import websockets  # noqa: E402

from transcription import audio as audio_io  # noqa: E402
from transcription.launcher import Ports, ServiceGroup, split_cores  # noqa: E402

SAMPLE = der.TESTDATA / "pyannote-sample" / "sample.wav"
AMI = der.TESTDATA / "ami-debug"
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "RESULTS.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=60).read()


async def gateway_run(gateway: str, media_url: str, diarize: bool, cold: bool = True) -> tuple[float, float]:
    """(time to first segment, total) in seconds for one job, with cold caches unless ``cold`` is false."""
    for cache in ("cache", "download-cache", "diarization-cache") if cold else ():  # every run starts cold
        post(f"http://{gateway}/api/{cache}/clear")
    began = time.perf_counter()
    first = None
    async with websockets.connect(f"ws://{gateway}/ws/transcribe", max_size=None) as ws:
        await ws.send(json.dumps({"url": media_url, "model": "base", "enable_diarization": diarize}))
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "transcription_chunk" and first is None:
                first = time.perf_counter() - began
            if message["type"] == "error":
                raise RuntimeError(message["error"])
            if message["type"] == "complete":
                return first, time.perf_counter() - began


async def diarizer_run(group: ServiceGroup, media_url: str) -> float:
    """Seconds the diarizer alone takes on a stored file (its cache skipped)."""
    from transcription.clients import DiarizerClient, DownloaderClient

    async with DownloaderClient(f"127.0.0.1:{group.ports.downloader}") as downloader:
        content_id = [e async for e in downloader.fetch(media_url)][-1].ready.content_id
    async with DiarizerClient(f"127.0.0.1:{group.ports.diarizer}") as diarizer:
        began = time.perf_counter()
        [e async for e in diarizer.diarize(content_id, skip_cache=True)]
        return time.perf_counter() - began


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio_io.SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def inprocess_run(model, path: Path) -> tuple[float, float]:
    began = time.perf_counter()
    pcm = audio_io.decode(path)
    segments, _ = model.transcribe(pcm, beam_size=5, vad_filter=True, vad_parameters={"min_silence_duration_ms": 500})
    first = None
    for _ in segments:
        if first is None:
            first = time.perf_counter() - began
    return first, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--soak-jobs", type=int, default=50, help="jobs in the soak of bench/load.py (make soak: 200)")
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    from transcription.asr.models import BUNDLED, materialize_bundled
    from transcription.devices import pick_device

    data = Path(tempfile.mkdtemp(prefix="bench-"))
    device = pick_device(os.environ.get("ASR_DEVICE", "auto"))
    compute_type = "float16" if device == "cuda" else "int8"
    cores = split_cores(dict(os.environ), os.cpu_count() or 1)  # as `make run` splits them: the diarizer's thread, the ASR the rest
    # in-process gets the threads the ASR service gets: like against like
    model = WhisperModel(
        str(materialize_bundled(BUNDLED["base"], data / "models")),
        device=device,
        compute_type=compute_type,
        cpu_threads=int(cores["ASR_CPU_THREADS"]) if device == "cpu" else 0,
    )

    media_dir = data / "media"
    media_dir.mkdir()
    (media_dir / "sample.wav").symlink_to(SAMPLE)
    # Four 30-s windows: where streaming shows (the sample is a single window,
    # whose segments all arrive when that window is decoded).
    ami = np.concatenate([audio_io.decode(AMI / f"{name}.wav") for name in ("dev00", "dev01", "tst00", "tst01")])
    write_wav(media_dir / "ami-2min.wav", ami)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(media_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    media = f"http://127.0.0.1:{server.server_address[1]}/"
    recordings = {"sample, 30 s": "sample.wav", "AMI join, 120 s": "ami-2min.wav"}

    group = ServiceGroup(
        Ports(free_port(), free_port(), free_port(), free_port()),
        env={
            "DATA_DIR": str(data),
            "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "WARNING",
            # the services load tests/netguard/sitecustomize.py: loopback only, as in the tests
            "PYTHONPATH": str(NETGUARD),
            "HF_HUB_OFFLINE": "1",
            **cores,
        },
        log_dir=data / "logs",
    )
    group.start(timeout=300)
    gateway = f"127.0.0.1:{group.ports.gateway}"
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        asyncio.run(gateway_run(gateway, media + "sample.wav", diarize=True))  # warm-up: loads the models
        inprocess_run(model, SAMPLE)
        for label, name in recordings.items():
            for _ in range(args.runs):
                rows.setdefault((label, "in-process"), []).append(inprocess_run(model, media_dir / name))
                rows.setdefault((label, "gateway"), []).append(asyncio.run(gateway_run(gateway, media + name, diarize=False)))
                rows.setdefault((label, "gateway+diarization"), []).append(asyncio.run(gateway_run(gateway, media + name, diarize=True)))
        # A repeat of a diarized transcript: every cache warm (download, transcript, speakers).
        asyncio.run(gateway_run(gateway, media + "ami-2min.wav", diarize=True))
        repeats = [asyncio.run(gateway_run(gateway, media + "ami-2min.wav", diarize=True, cold=False))[1] for _ in range(5)]
        # ASR and diarization side by side (on cores of their own) against each alone.
        diarize_alone = [asyncio.run(diarizer_run(group, media + "ami-2min.wav")) for _ in range(args.runs)]
    finally:
        group.stop()
        server.shutdown()

    median = {key: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)) for key, runs in rows.items()}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {device}/{compute_type}"
    lines = [
        f"Model base, beam 5, VAD on, language detected; median of {args.runs} runs on {machine}; "
        f"the ASR service and in-process both on {cores['ASR_CPU_THREADS']} thread(s) "
        f"(the diarizer keeps {cores['DIARIZER_THREADS']}, as `make run` splits them). "
        "Gateway runs start with empty caches (download from a local HTTP server included).",
        "",
        "| audio | path | time to first segment | wall time | × in-process (first) | × in-process (wall) |",
        "|---|---|---|---|---|---|",
    ]
    for (label, path), (first, total) in median.items():
        base_first, base_total = median[(label, "in-process")]
        lines.append(f"| {label} | {path} | {first:.2f} s | {total:.2f} s | {first / base_first:.2f} | {total / base_total:.2f} |")
    asr_alone = median[("AMI join, 120 s", "gateway")][1]
    both = median[("AMI join, 120 s", "gateway+diarization")][1]
    slower = max(asr_alone, statistics.median(diarize_alone))
    lines += [
        "",
        f"Cached repeat of a diarized transcript (AMI join, every cache warm), end to end through the WebSocket: "
        f"median {statistics.median(repeats) * 1000:.0f} ms of 5 (goal < 500 ms).",
        "",
        f"Transcription and diarization side by side (ASR_CPU_THREADS={cores['ASR_CPU_THREADS']}, "
        f"DIARIZER_THREADS={cores['DIARIZER_THREADS']}) on the AMI join: both {both:.2f} s; ASR alone {asr_alone:.2f} s; "
        f"diarization alone {statistics.median(diarize_alone):.2f} s; both / the slower alone = {both / slower:.2f} (goal ≤ 1.15).",
    ]
    lines += [
        "",
        "Diarization, bundled offline pipeline (`bench/der.py`), pyannote.metrics inside each file's UEM, overlap scored; "
        "speaker count unknown, then given; × real time at 1 torch thread:",
        "",
        *der.markdown(der.measure()),
        "",
        f"Diarization speed by torch thread count on the 60-s development join, CPU ({os.cpu_count()} cores), count unknown:",
        "",
        *der.threads_markdown(der.measure_threads()),
        "",
        "ASR engines in-process on the AMI join (`bench/asr.py`), greedy, language given:",
        "",
        *asr.markdown(asr.measure()),
        "",
        "Downloader (`bench/downloader.py`): a local HTTP server (sendfile) against curl from the same server; "
        "ReadAudio against reading the file locally; peak memory of getting an hour's samples, before (the whole original "
        "pulled and decoded in the service) and after (canonical PCM read into one array):",
        "",
        *downloader.markdown(downloader.measure()),
        "",
        "Scale-out (`bench/scale.py`): ASR replicas pinned to cores of their own, behind one gateway.",
        "",
        *scale.markdown(scale.measure()),
        "",
        "Load and soak (`bench/load.py`; `make soak` runs the soak with 200 jobs): one gateway, every service's memory and "
        "open descriptors measured from /proc.",
        "",
        *load.markdown(load.measure(jobs=args.soak_jobs)),
        "",
        "Speaker assignment (`bench/assign.py`), a synthetic hour: 10,000 words against 2,000 turns, same answers:",
        "",
        *assign.markdown(assign.measure()),
    ]
    table = "\n".join(lines)
    RESULTS.write_text("# Benchmark results\n\nWritten by `make bench` (bench/run.py).\n\n" + table + "\n")
    if README.exists():
        text = README.read_text()
        text = re.sub(
            r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.DOTALL
        )
        README.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
