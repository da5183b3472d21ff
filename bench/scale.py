"""ASR replicas side by side, in one run on the same audio: throughput and long-file fan-out, as ratios.

* throughput: four concurrent WebSocket jobs (the 30-s two-speaker sample, each
  with an inaudible offset of its own) through a gateway over ONE replica pinned
  to one core, against a gateway over TWO replicas pinned to a core each; with
  the downloads cold, then with the audio already in the downloader's store;
* fan-out: a 10-minute file (the sample tiled 20 times) through the one replica
  in one call, against the two replicas in five pieces of about 120 s; wall
  times, and WER against the sample's reference text repeated 20 times.

Model tiny.en, service defaults, no diarization, ASR_CPU_THREADS=1; downloader, gateways and this
process unpinned. Both configurations get the same files, each replica's transcript cache and the
downloader's store emptied before every run (over gRPC, each replica on its own). Rounds alternate
the order; medians of RUNS. Each round's long file has another offset: tiny.en's time and WER on it
swing with inaudible changes. Traffic stays on loopback (tests/netguard).

    .venv/bin/python bench/scale.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = ROOT / "tests" / "netguard"
sys.path.insert(0, str(ROOT / "tests"))
from conftest import SAMPLE_STM, SAMPLE_WAV, console_command, free_port, read_audio, scrape, stm_text, value, wer, write_wav, ws_job  # noqa: E402
from transcription.clients import AsrClient, DownloaderClient  # noqa: E402
from transcription.launcher import Ports, ServiceGroup  # noqa: E402

MODEL = "tiny.en"
RUNS = 3
JOBS = 4
TILES = 20  # 20 × 30 s = 10 min
SERVICES = {"HF_HUB_OFFLINE": "1", "LOG_LEVEL": "WARNING", "GATEWAY_RATE_LIMIT_PER_MINUTE": "0", "ASR_CPU_THREADS": "1"}
SERVICES |= {"DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8", "DIARIZER_THREADS": "1"}
FANOUT = {"GATEWAY_FANOUT_MIN_SECONDS": "300", "GATEWAY_FANOUT_PIECE_SECONDS": "120", "GATEWAY_FANOUT_PARALLEL": "4"}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def spawn(stack: contextlib.ExitStack, command: str, env: dict, log: Path, core: int | None = None) -> subprocess.Popen:
    """A service process (pinned to ``core`` if given), terminated when ``stack`` closes."""
    out = stack.enter_context(log.open("ab"))
    pin = ["taskset", "-c", str(core)] if core is not None else []
    process = subprocess.Popen([*pin, console_command(command)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


class Cluster:
    """The ServiceGroup (downloader, diarizer), replicas A (core 0) and B (core 1), and a gateway over each set."""

    def __init__(self, stack: contextlib.ExitStack, work: Path):
        self.stack, self.work = stack, work
        self.base = os.environ | SERVICES | {"PYTHONPATH": str(NETGUARD)}
        ports = Ports(free_port(), free_port(), free_port(), free_port())
        self.group = ServiceGroup(ports, env=self.base | {"DATA_DIR": str(work / "data")}, log_dir=work / "logs")
        self.group.start(timeout=300)
        stack.callback(self.group.stop)
        self.downloader = f"127.0.0.1:{self.group.ports.downloader}"
        self.replicas = [self.replica("a", 0), self.replica("b", 1)]  # (gRPC port, metrics port)
        self.one = self.gateway(self.replicas[:1], GATEWAY_FANOUT_MIN_SECONDS="0")  # never cut: one call
        self.two = self.gateway(self.replicas, **FANOUT)  # the 30-s jobs are under the threshold: one call each

    def replica(self, name: str, core: int) -> tuple[int, int]:
        port, metrics = free_port(), free_port()
        env = self.base | {
            "DATA_DIR": str(self.work / f"asr-{name}"),
            "ASR_PORT": str(port),
            "ASR_METRICS_PORT": str(metrics),
            "ASR_PRELOAD_MODELS": MODEL,
            "DOWNLOADER_ADDR": self.downloader,
        }
        spawn(self.stack, "transcription-asr", env, self.work / "logs" / f"asr-{name}.log", core)
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=120)
        return port, metrics

    def gateway(self, replicas: list[tuple[int, int]], **settings: str) -> int:
        port = free_port()
        env = self.base | {
            "GATEWAY_PORT": str(port),
            "DOWNLOADER_ADDR": self.downloader,
            "ASR_ADDR": ",".join(f"127.0.0.1:{p}" for p, _ in replicas),
            "DIARIZER_ADDR": f"127.0.0.1:{self.group.ports.diarizer}",
            **settings,
        }
        process = spawn(self.stack, "transcription-gateway", env, self.work / "logs" / f"gateway-{port}.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                return port
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("a gateway did not start") from None
                time.sleep(0.2)

    def calls(self) -> list[int]:
        """Transcribe calls each replica has served so far."""
        scrapes = [scrape(f"http://127.0.0.1:{metrics}/metrics") for _, metrics in self.replicas]
        return [int(value(s, "transcription_grpc_requests_total", method="Transcribe")) for s in scrapes]


async def job(port: int, url: str) -> str:
    """The transcript of one WebSocket job."""
    received = await ws_job(port, {"url": url, "model": MODEL, "enable_diarization": False}, timeout=600)
    if received.messages[-1]["type"] != "complete":
        raise RuntimeError(f"job failed: {received.messages[-1]}")
    return " ".join(c["text"] for c in received.of("transcription_chunk"))


async def timed(port: int, urls: list[str]) -> tuple[float, list[str]]:
    began = time.perf_counter()
    texts = await asyncio.gather(*(job(port, url) for url in urls))
    return time.perf_counter() - began, texts


async def clear(cluster: Cluster, downloads: bool) -> None:
    """Empty each replica's transcript cache (a call through a gateway reaches one), and the downloads if asked."""
    for port, _ in cluster.replicas:
        async with AsrClient(f"127.0.0.1:{port}") as client:
            await client.clear_cache()
    if downloads:
        async with DownloaderClient(cluster.downloader) as client:
            await client.clear_cache()


def alternate(cluster: Cluster, urls, downloads: bool = True) -> dict[int, list[tuple]]:
    """``urls(round)`` at once through each gateway, the order swapped every round: [(wall, texts, calls per replica)]."""
    results: dict[int, list[tuple]] = {cluster.one: [], cluster.two: []}
    for round_ in range(RUNS):
        for port in (cluster.one, cluster.two) if round_ % 2 == 0 else (cluster.two, cluster.one):
            asyncio.run(clear(cluster, downloads))
            before = cluster.calls()
            wall, texts = asyncio.run(timed(port, urls(round_)))
            results[port].append((wall, texts, [after - b for b, after in zip(before, cluster.calls())]))
    return results


def run_all(cluster: Cluster, media: Path, url: str) -> list[tuple]:
    sample = read_audio(SAMPLE_WAV)

    def offset(samples: np.ndarray, name: str, seed: int) -> None:
        write_wav(media / name, samples + np.random.default_rng(seed).normal(0, 1e-4, 1).astype(np.float32))

    for n in range(JOBS + 1):
        offset(sample, f"{n}.wav", n)
    for n in range(RUNS):
        offset(np.tile(sample, TILES), f"long-{n}.wav", 100 + n)
    for port in (cluster.one, cluster.two, cluster.two):  # warm-up: both gateways, each replica (round robin)
        asyncio.run(timed(port, [f"{url}{JOBS}.wav"]))
    short = [f"{url}{n}.wav" for n in range(JOBS)]
    cold = alternate(cluster, lambda _: short)
    fetched = alternate(cluster, lambda _: short, downloads=False)  # the audio already in the downloader's store
    files = alternate(cluster, lambda n: [f"{url}long-{n}.wav"])

    def walls(results: dict[int, list[tuple]]) -> list[float]:
        return [statistics.median(r[0] for r in results[port]) for port in (cluster.one, cluster.two)]

    def calls(results: dict[int, list[tuple]]) -> str:
        return "per replica, each round: " + " ".join(str(r[2]) for r in results[cluster.two])

    rows = []
    for name, results in (("downloads cold", cold), ("audio already fetched", fetched)):
        (a, b), label = walls(results), f"{JOBS} concurrent 30-s jobs, {name}"
        rows.append((label, f"{a:.2f} s", f"{b:.2f} s", f"throughput ×{a / b:.2f}", "≥ 1.7×", calls(results)))
    (a, b), label = walls(files), f"{TILES * 30 // 60}-min file"
    rows.append((f"{label}, wall time", f"{a:.2f} s (one call)", f"{b:.2f} s (fanned out)", f"×{b / a:.2f}", "≤ 0.6×", calls(files)))
    reference = " ".join([stm_text(SAMPLE_STM)] * TILES)
    errors = [[wer(reference, r[1][0]) * 100 for r in files[port]] for port in (cluster.one, cluster.two)]
    seq, fan = (f"{statistics.mean(e):.1f}% ({min(e):.1f}–{max(e):.1f})" for e in errors)
    gap = statistics.mean(errors[1]) - statistics.mean(errors[0])
    rows.append((f"{label}, WER: mean (range)", seq, fan, f"{gap:+.1f} points", "within 1 point", f"{RUNS} offsets, one a round"))
    return rows


def measure() -> list[tuple]:
    """Rows: (measure, 1 replica, 2 replicas, ratio, goal, note)."""
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # runs last
        (media := work / "media").mkdir()
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(media)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.callback(server.shutdown)
        try:
            cluster = Cluster(stack, work)
            return run_all(cluster, media, f"http://127.0.0.1:{server.server_address[1]}/")
        except BaseException:
            for log in sorted((work / "logs").glob("*.log")):
                print(f"----- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise


def markdown(rows: list[tuple]) -> list[str]:
    lines = [
        f"Model {MODEL} (beam 5, VAD on), no diarization; ASR_CPU_THREADS=1, each replica pinned to a core of its own; "
        f"same files for both, caches emptied before each run; median of {RUNS} alternating rounds.",
        "",
        "| measure | 1 replica (core 0) | 2 replicas (cores 0, 1) | ratio | goal | note |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return lines


def main() -> None:
    from standalone import run_alone  # bench/ is on sys.path when a module runs on its own

    run_alone(measure, markdown)


if __name__ == "__main__":
    main()
