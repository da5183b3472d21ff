"""Load and soak: many WebSocket sessions at once on one gateway, then many jobs one after another.

* burst: SESSIONS sessions opened at once on one gateway (model tiny.en, no
  diarization), each on its own copy of jfk.flac (11 s) with an inaudible
  offset, so no cache knows any of them: every admitted job downloads, decodes
  and transcribes. Each session must end in ``complete`` or a clean busy
  ``error`` (the gateway's session cap, or a service's admission queue, whose
  RESOURCE_EXHAUSTED the gateway forwards); anything else counts as an error.
  Times to the first segment and to ``complete`` from opening the socket; each
  service's RSS and open descriptors before (after a warm-up job) and after.
* soak: JOBS jobs one after another through the whole pipeline (download, ASR,
  diarization) on the first CLIP seconds of jfk.flac, fresh bytes for every job
  so no stage answers from its cache; RSS and open descriptors of each service
  after job 10 and after the last.

Figures, not verdicts: tests/resilience/test_load.py runs both at CI size on
the same helpers and asserts on the outcomes. Traffic stays on loopback
(tests/netguard).

    .venv/bin/python bench/load.py --sessions 50 --jobs 200     # make soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from scale import QuietHandler  # noqa: E402  (bench/ is on sys.path: the script's folder, or put there by the test)

from conftest import JFK_FLAC, NETGUARD, MediaServer, free_port, fresh_copy, read_audio, write_wav, ws_job  # noqa: E402
from transcription.launcher import Ports, ServiceGroup, split_cores  # noqa: E402

MODEL = "tiny.en"
SESSIONS = int(os.environ.get("LOAD_SESSIONS", 50))
JOBS = int(os.environ.get("SOAK_JOBS", 200))
CLIP = 4.0  # seconds of jfk.flac per soak job: "And so my fellow Americans"
SOAK_MARK = 10  # usage after this job is the soak's baseline: models loaded, pools filled
# What a clean refusal says: the gateway's session cap, or a service's admission queue (threads.Admission).
BUSY = re.compile(r"too many open sessions on this gateway|the (?P<service>[\w ]+?) is at capacity")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    fds: int


def usage(pid: int) -> Usage:
    """Resident memory (statm's second field, in pages) and open descriptors of a process now."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return Usage(resident_pages * PAGE, len(os.listdir(f"/proc/{pid}/fd")))


async def settle(pids: dict[str, int], quiet: float = 1.0, limit: float = 30.0) -> dict[str, Usage]:
    """Usage of each process once its descriptor count has not moved for ``quiet`` seconds (sockets closing)."""
    last = {name: usage(pid) for name, pid in pids.items()}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = {name: usage(pid) for name, pid in pids.items()}
        if all(now[name].fds == last[name].fds for name in pids):
            return now
        last = now
    return last


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the closest ranks; nan when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Outcome:
    kind: str  # "completed", "refused" (a clean busy error) or "failed"
    last: dict  # the final message (complete or error); for a failure without one, {"error": what happened}
    first_segment: float | None  # seconds from opening the socket to the first transcription_chunk
    total: float  # seconds from opening the socket to the final message

    @property
    def refused_by(self) -> str:
        """Who refused: "gateway" (its session cap) or the service whose admission queue was full."""
        match = BUSY.search(self.last.get("error", ""))
        return (match["service"] or "gateway") if match else ""


async def session(port: int, request: dict, timeout: float = 600) -> Outcome:
    """One WebSocket job on the gateway at ``port``, classified; never raises for what the gateway does."""
    began = time.monotonic()
    try:
        received = await ws_job(port, request, timeout)
    except websockets.ConnectionClosed as exc:
        # Refused before the request went out: the close frame (1013, try again later) carries the busy message.
        if exc.rcvd is not None and exc.rcvd.code == 1013 and BUSY.search(exc.rcvd.reason):
            return Outcome("refused", {"type": "error", "error": exc.rcvd.reason}, None, time.monotonic() - began)
        return Outcome("failed", {"error": f"{type(exc).__name__}: {exc}"}, None, time.monotonic() - began)
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:  # a hang, a refused handshake
        return Outcome("failed", {"error": f"{type(exc).__name__}: {exc}"}, None, time.monotonic() - began)
    last = received.messages[-1]
    first = next((t - began for m, t in zip(received.messages, received.arrived) if m["type"] == "transcription_chunk"), None)
    kind = "completed" if last["type"] == "complete" else "refused" if BUSY.search(last.get("error", "")) else "failed"
    return Outcome(kind, last, first, received.arrived[-1] - began)


async def burst(port: int, urls: list[str], model: str = MODEL) -> list[Outcome]:
    """A session per URL, all opened at once."""
    return await asyncio.gather(*(session(port, {"url": url, "model": model}) for url in urls))


async def soak(
    port: int, urls: Iterable[str], pids: dict[str, int], marks: set[int], model: str = MODEL
) -> tuple[list[Outcome], dict[int, dict[str, Usage]]]:
    """Diarized jobs one after another; each process's usage after the jobs numbered in ``marks`` (from 1)."""
    outcomes, usages = [], {}
    for number, url in enumerate(urls, 1):
        outcomes.append(await session(port, {"url": url, "model": model, "enable_diarization": True}))
        if number in marks:
            usages[number] = await settle(pids)
    return outcomes, usages


def write_clip(directory: Path, seconds: float = CLIP) -> Path:
    """The first ``seconds`` of jfk.flac as a WAV in ``directory``: the source of the soak's fresh copies."""
    path = directory / f"jfk-{seconds:g}s.wav"
    write_wav(path, read_audio(JFK_FLAC)[: int(seconds * 16_000)])
    return path


# -- the benchmark ----------------------------------------------------------------


@dataclass
class Report:
    sessions: int
    burst: list[Outcome]
    before: dict[str, Usage]  # after the warm-up job
    after: dict[str, Usage]  # after the burst
    soak: list[Outcome]
    marks: dict[int, dict[str, Usage]]


def start_system(work: Path) -> ServiceGroup:
    env = {
        "DATA_DIR": str(work / "data"),
        "PYTHONPATH": str(NETGUARD),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "WARNING",
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "0",  # every session comes from 127.0.0.1
        "ASR_PRELOAD_MODELS": MODEL,
        **split_cores(dict(os.environ), os.cpu_count() or 1),  # as `make run` shares the cores
    }
    group = ServiceGroup(Ports(free_port(), free_port(), free_port(), free_port()), env=env, log_dir=work / "logs")
    group.start(timeout=300)
    return group


async def run_all(group: ServiceGroup, media: MediaServer, sessions: int, jobs: int) -> Report:
    port = group.ports.gateway
    pids = {name: process.pid for name, process in group.processes.items()}
    warm = await session(port, {"url": media.url("jfk.flac"), "model": MODEL, "enable_diarization": True})
    if warm.kind != "completed":
        raise RuntimeError(f"the warm-up job failed: {warm.last}")
    before = await settle(pids)
    urls = [fresh_copy(media, JFK_FLAC, f"burst-{n}.wav", n) for n in range(sessions)]
    outcomes = await burst(port, urls)
    after = await settle(pids)
    clip = write_clip(media.directory)
    soak_urls = (fresh_copy(media, clip, f"soak-{n}.wav", 10_000 + n) for n in range(jobs))  # written as each job starts
    soaked, marks = await soak(port, soak_urls, pids, {min(SOAK_MARK, jobs), jobs})
    return Report(sessions, outcomes, before, after, soaked, marks)


def measure(sessions: int = SESSIONS, jobs: int = JOBS) -> Report:
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # runs last
        (work / "media").mkdir()
        (work / "media" / "jfk.flac").symlink_to(JFK_FLAC)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(work / "media")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.callback(server.shutdown)
        group = start_system(work)
        stack.callback(group.stop)
        try:
            return asyncio.run(run_all(group, MediaServer(work / "media", server.server_address[1], server), sessions, jobs))
        except BaseException:
            for log in sorted((work / "logs").glob("*.log")):
                print(f"----- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise


def _seconds(values: list[float]) -> str:
    return f"{percentile(values, 50):.2f} s / {percentile(values, 95):.2f} s" if values else "–"


def _usage(a: Usage, b: Usage) -> tuple[str, str]:
    return f"{a.rss_bytes / MB:.0f} → {b.rss_bytes / MB:.0f} MB", f"{a.fds} → {b.fds}"


def markdown(report: Report) -> list[str]:
    kinds = Counter(o.kind for o in report.burst)
    refusers = Counter(o.refused_by for o in report.burst if o.kind == "refused")
    done = [o for o in report.burst if o.kind == "completed"]
    errors = Counter(o.last.get("error", "") for o in report.burst + report.soak if o.kind == "failed")
    soaked = [o for o in report.soak if o.kind == "completed"]
    first_mark, last_mark = sorted(report.marks)[0], sorted(report.marks)[-1]
    lines = [
        f"Burst: {report.sessions} WebSocket sessions opened at once on one gateway (GATEWAY_MAX_SESSIONS default), {MODEL}, "
        "no diarization, each on its own copy of jfk.flac (11 s, an inaudible offset: no cache hits). "
        f"Soak: {len(report.soak)} diarized jobs one after another on fresh copies of the first {CLIP:g} s. "
        "Times from opening the socket, p50 / p95.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| burst: completed | {kinds['completed']} of {report.sessions} |",
        f"| burst: refused, clean busy message | {kinds['refused']} ({', '.join(f'{k} {v}' for k, v in refusers.items()) or 'none'}) |",
        f"| burst: other errors (must be 0) | {kinds['failed']} |",
        f"| burst: time to first segment, completed sessions | {_seconds([o.first_segment for o in done if o.first_segment is not None])} |",
        f"| burst: time to complete | {_seconds([o.total for o in done])} |",
        f"| soak: completed | {len(soaked)} of {len(report.soak)} |",
        f"| soak: time to complete, per job | {_seconds([o.total for o in soaked])} |",
    ]
    lines += [f"| error: {text[:120]} | {count} |" for text, count in errors.items()]
    lines += [
        "",
        f"| service | burst: RSS before → after | burst: open FDs before → after | soak: RSS after job {first_mark} → {last_mark} "
        f"| soak: open FDs after job {first_mark} → {last_mark} |",
        "|---|---|---|---|---|",
    ]
    for name in report.before:
        burst_rss, burst_fds = _usage(report.before[name], report.after[name])
        soak_rss, soak_fds = _usage(report.marks[first_mark][name], report.marks[last_mark][name])
        lines.append(f"| {name} | {burst_rss} | {burst_fds} | {soak_rss} | {soak_fds} |")
    return lines


def main() -> None:
    from standalone import run_alone

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="sessions opened at once (env LOAD_SESSIONS)")
    parser.add_argument("--jobs", type=int, default=JOBS, help="soak jobs one after another (env SOAK_JOBS)")
    args = parser.parse_args()
    run_alone(partial(measure, args.sessions, args.jobs), markdown)


if __name__ == "__main__":
    main()
