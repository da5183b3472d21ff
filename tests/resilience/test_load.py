"""Load and soak at CI size: sessions at once end in a transcript or a clean busy message; jobs in a row leak nothing.

The measuring and the sessions are bench/load.py's (`make soak` runs them at full size and reports figures);
here they run small and the outcomes are asserted, never the timings.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections import Counter

import pytest

from conftest import JFK_FLAC, ROOT, fresh_copy, start_gateway

sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402

SESSIONS = 16
MAX_SESSIONS = 4  # below the downloader's and the ASR's admission queues: only the gateway refuses
SOAK_JOBS = 30
FD_MARGIN = 2  # a pooled connection opened or closed in between; a leak of one a job shows 20 past the mark
# Job 10 to job 60 moved no service by more than 2 MB (bench/load.py): 24 MB catches a leak of ~1 MB a job or more.
RSS_MARGIN = 24 * load.MB
BURST_RSS_MARGIN = 32 * load.MB  # 50 sessions at once moved the gateway by 5 MB


@pytest.fixture(scope="module")
def capped_gateway(system):
    process, port = start_gateway(system, GATEWAY_MAX_SESSIONS=str(MAX_SESSIONS), GATEWAY_RATE_LIMIT_PER_MINUTE="0")
    yield process, port
    process.terminate()
    process.wait(timeout=30)


async def test_sessions_at_once_complete_or_get_a_clean_busy_message(capped_gateway, media):
    process, port = capped_gateway
    warm = await load.session(port, {"url": media.url("jfk.flac"), "model": load.MODEL})  # channels open, model loaded
    assert warm.kind == "completed", warm.last
    before = await load.settle({"gateway": process.pid})

    urls = [fresh_copy(media, JFK_FLAC, f"load-burst-{n}.wav", 20_000 + n) for n in range(SESSIONS)]
    outcomes = await load.burst(port, urls)

    kinds = Counter(o.kind for o in outcomes)
    assert kinds["failed"] == 0, [o.last for o in outcomes if o.kind == "failed"]
    # every session the gateway admitted got its transcript: nothing downstream refused or dropped it
    assert kinds["completed"] >= MAX_SESSIONS and kinds["refused"] >= 1, kinds
    assert {o.refused_by for o in outcomes if o.kind == "refused"} == {"gateway"}
    assert all(o.last["segments"] >= 1 for o in outcomes if o.kind == "completed"), [o.last for o in outcomes]
    after = (await load.settle({"gateway": process.pid}))["gateway"]
    assert after.fds <= before["gateway"].fds + FD_MARGIN, (before, after)
    assert after.rss_bytes <= before["gateway"].rss_bytes + BURST_RSS_MARGIN, (before, after)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
        assert json.load(response)["status"] == "healthy"


async def test_soak_leaks_no_descriptors_and_no_memory(system, media):
    pids = {name: process.pid for name, process in system.processes.items()}
    clip = load.write_clip(media.directory)
    urls = (fresh_copy(media, clip, f"load-soak-{n}.wav", 30_000 + n) for n in range(SOAK_JOBS))
    outcomes, marks = await load.soak(system.ports.gateway, urls, pids, {load.SOAK_MARK, SOAK_JOBS})

    assert [o.kind for o in outcomes] == ["completed"] * SOAK_JOBS, [o.last for o in outcomes if o.kind != "completed"]
    # the whole pipeline ran every time: segments from the ASR, a speaker from the diarizer
    assert all(o.last["segments"] >= 1 and o.last["num_speakers"] >= 1 for o in outcomes), [o.last for o in outcomes]
    for name in pids:
        mark, last = marks[load.SOAK_MARK][name], marks[SOAK_JOBS][name]
        assert last.fds <= mark.fds + FD_MARGIN, (name, mark, last)
        assert last.rss_bytes <= mark.rss_bytes + RSS_MARGIN, (name, mark, last)
