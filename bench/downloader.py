"""The downloader against plain tools, in one run on the same files: rates, latency, memory, as ratios.

* direct download: the downloader service (gRPC Fetch, force_refresh, store
  cleared first so every run also probes and decodes the canonical form) against
  ``curl -s -o file`` of the same 200 MB WAV (random 16 kHz mono samples) from
  the same local HTTP server (stdlib, with sendfile: its 64 KiB copy loop was
  slower than curl); download phase = first to last Progress; median of 3;
* URL-cache hit: a second Fetch of a fetched URL, median of 20;
* ReadAudio of a stored ~110 MB FLAC (original and canonical form) against
  reading the same store file locally in 1 MiB blocks, median of 3;
* peak memory of getting one hour of samples, each in a fresh process: before,
  ``read_audio`` + ``audio.decode``; after, ``resolve_samples`` (canonical PCM
  straight into one float32 array, 230 MB for an hour).

All traffic stays on loopback (tests/netguard).

    .venv/bin/python bench/downloader.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import grpc
import numpy as np

from transcription.clients import DownloaderClient

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = ROOT / "tests" / "netguard"
MB = 1e6
RATE = 16_000

# Run in a fresh process: peak RSS over the RSS after imports and connecting, for one way of getting samples.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a child of this
# (several hundred MB) process would report the parent's peak.
CHILD = """
import asyncio, sys
from pathlib import Path
from transcription import audio
from transcription.clients import DownloaderClient
from transcription.v1.common_pb2 import AudioRef
kb = lambda field: int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])

async def main(address, content_id, way):
    async with DownloaderClient(address) as client:
        await client.health()
        baseline = kb("VmRSS")
        if way == "before":
            samples = audio.decode(await client.read_audio(content_id))
        else:
            samples = await audio.resolve_samples(AudioRef(content_id=content_id), client)
    print((kb("VmHWM") - baseline) * 1024, samples.size)

asyncio.run(main(*sys.argv[1:]))
"""


class SendfileHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:
        self.connection.sendfile(source)


def write_wav(path: Path, size: int, random: bool = True) -> None:
    """``size`` bytes of 16 kHz mono s16 samples, random or silent, written 10 MB at a time."""
    rng = np.random.default_rng(1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for piece in (min(10_000_000, size - start) for start in range(0, size, 10_000_000)):
            out.writeframes(rng.bytes(piece) if random else bytes(piece))


def write_noise_flac(path: Path, seconds: int) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        stream.codec_context.options = {"compression_level": "0"}
        for _ in range(0, seconds, 10):
            frame = av.AudioFrame.from_ndarray((rng.standard_normal((1, 10 * RATE)) * 3000).astype(np.int16), format="s16", layout="mono")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def environment():
    """(work dir, media URL prefix, downloader address), all torn down afterwards."""
    work = Path(tempfile.mkdtemp(prefix="bench-downloader-"))
    (work / "media").mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SendfileHandler, directory=str(work / "media")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(work / "data"),
        "DOWNLOADER_PORT": str(port),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([str(Path(sys.executable).with_name("transcription-downloader"))], env=env, stderr=subprocess.DEVNULL)
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=60)
        yield work, f"http://127.0.0.1:{server.server_address[1]}/", f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


async def fetch(client: DownloaderClient, url: str, force_refresh: bool = False) -> tuple[float, float, str]:
    """(download phase, whole fetch) in seconds, and the content id."""
    began = first = last = time.perf_counter()
    async for event in client.fetch(url, force_refresh=force_refresh):
        if event.HasField("progress"):
            last = time.perf_counter()
            first = first if first > began else last  # the first one comes with the response headers
        elif event.HasField("ready"):
            return last - first, time.perf_counter() - began, event.ready.content_id
    raise RuntimeError(f"no Ready for {url}")


def curl(url: str, out: Path) -> float:
    """curl's own total time (no process start-up) for the download into ``out``."""
    result = subprocess.run(["curl", "-s", "-o", str(out), "-w", "%{time_total}", url], check=True, capture_output=True, text=True)
    return float(result.stdout)


async def read_rate(client: DownloaderClient, content_id: str, canonical: bool) -> float:
    began, size = time.perf_counter(), 0
    async for chunk in client.iter_audio(content_id, canonical=canonical, chunk_size=1 << 20):
        size += len(chunk.data)
    return size / MB / (time.perf_counter() - began)


def local_rate(path: Path) -> float:
    began, size = time.perf_counter(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            size += len(block)
    return size / MB / (time.perf_counter() - began)


def peak_memory(address: str, content_id: str, way: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(NETGUARD)}
    result = subprocess.run([sys.executable, "-c", CHILD, address, content_id, way], env=env, check=True, capture_output=True, text=True)
    grown, samples = map(int, result.stdout.split())
    assert samples == 3600 * RATE, samples
    return grown / MB


async def run_all(work: Path, media: str, address: str) -> list[tuple]:
    write_wav(work / "media" / "big.wav", 200_000_000)
    write_wav(work / "media" / "warm.wav", 2 * RATE, random=False)
    write_noise_flac(work / "media" / "hour.flac", 3600)
    size = (work / "media" / "big.wav").stat().st_size / MB
    store = work / "data" / "downloads" / "audio"
    async with DownloaderClient(address) as client:
        await fetch(client, media + "warm.wav")  # warm-up: imports, yt-dlp's extractor list
        download, whole, curled = [], [], []
        for _ in range(3):
            await client.clear_cache()  # every run also probes and decodes the canonical form
            phase, total, _ = await fetch(client, media + "big.wav", force_refresh=True)
            download.append(size / phase)
            whole.append(size / total)
            curled.append(size / curl(media + "big.wav", work / "curl.wav"))
        (work / "curl.wav").unlink()
        hits = [(await fetch(client, media + "big.wav"))[1] * 1000 for _ in range(20)]

        *_, hour = await fetch(client, media + "hour.flac")
        hour_mb = (store / hour).stat().st_size / MB
        reads = {}
        for canonical, suffix in ((False, ""), (True, ".pcm")):
            ours = [await read_rate(client, hour, canonical) for _ in range(3)]
            local = [local_rate(store / (hour + suffix)) for _ in range(3)]
            reads[canonical] = statistics.median(ours), statistics.median(local), (store / (hour + suffix)).stat().st_size / MB
    before = peak_memory(address, hour, "before")
    after = peak_memory(address, hour, "after")

    median = statistics.median
    curl_rate = median(curled)
    return [
        (f"download phase, {size:.0f} MB WAV (Fetch, first to last Progress)", median(download), "MB/s", "curl", curl_rate, "≥ 0.8"),
        ("whole fetch (+ probe, canonical decode, store)", median(whole), "MB/s", "curl", curl_rate, ""),
        ("URL-cache hit (second Fetch), median of 20", median(hits), "ms", "", None, "< 50 ms"),
        (f"ReadAudio, original ({hour_mb:.0f} MB FLAC)", reads[False][0], "MB/s", "local 1 MiB reads", reads[False][1], ""),
        (f"ReadAudio, canonical ({reads[True][2]:.0f} MB PCM)", reads[True][0], "MB/s", "local 1 MiB reads", reads[True][1], ""),
        ("peak RSS for 1 h of samples: resolve_samples (after)", after, "MB", "read_audio + decode (before)", before, "after ≈ 230 MB"),
    ]


def measure() -> list[tuple]:
    """Rows: (measure, value, unit, reference, reference value or None, goal)."""
    with environment() as (work, media, address):
        return asyncio.run(run_all(work, media, address))


def markdown(rows: list[tuple]) -> list[str]:
    lines = ["| measure | downloader | reference | ratio | goal |", "|---|---|---|---|---|"]
    for name, value, unit, reference, reference_value, goal in rows:
        digits = 0 if unit != "ms" else 1
        against = f"{reference} {reference_value:.{digits}f} {unit}" if reference_value is not None else ""
        ratio = f"{value / reference_value:.2f}" if reference_value else ""
        lines.append(f"| {name} | {value:.{digits}f} {unit} | {against} | {ratio} | {goal} |")
    return lines


def main() -> None:
    from standalone import run_alone  # bench/ is on sys.path when a module runs on its own

    run_alone(measure, markdown)


if __name__ == "__main__":
    main()
