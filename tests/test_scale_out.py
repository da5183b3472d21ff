"""Several ASR replicas behind one gateway: calls balanced per call, a replica lost mid-job replaced by another."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import websockets

from conftest import (
    JFK_FLAC,
    NETGUARD,
    SAMPLE_STM,
    SAMPLE_WAV,
    call,
    console_command,
    free_port,
    fresh_copy,
    read_audio,
    scrape,
    start_gateway,
    stm_text,
    value,
    wer,
    write_wav,
    ws_job,
)


@dataclass
class Replica:
    port: int
    metrics_port: int
    env: dict
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([console_command("transcription-asr")], env=self.env, stderr=subprocess.DEVNULL)
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{self.port}")).result(timeout=60)

    def metric(self, name: str, **labels) -> float:
        return value(scrape(f"http://127.0.0.1:{self.metrics_port}/metrics"), name, **labels)

    def transcriptions(self) -> float:
        return self.metric("transcription_grpc_requests_total", method="Transcribe")


@pytest.fixture(scope="module")
def replicas(system, tmp_path_factory):
    started = []
    for _ in range(2):
        port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(NETGUARD),
            "DATA_DIR": str(tmp_path_factory.mktemp("asr-replica")),
            "ASR_PORT": str(port),
            "ASR_METRICS_PORT": str(metrics_port),
            "ASR_CPU_THREADS": "1",
            "DOWNLOADER_ADDR": f"127.0.0.1:{system.ports.downloader}",
        }
        replica = Replica(port, metrics_port, env)
        replica.start()
        started.append(replica)
    yield started
    for replica in started:
        if replica.process.poll() is None:
            replica.process.terminate()
            replica.process.wait(timeout=30)


@pytest.fixture(scope="module")
def gateway(system, replicas):
    process, port = start_gateway(system, ASR_ADDR=",".join(f"127.0.0.1:{r.port}" for r in replicas))
    yield port
    process.terminate()
    process.wait(timeout=30)


async def test_four_concurrent_jobs_are_balanced_over_both_replicas(gateway, replicas, media):
    before = [r.transcriptions() for r in replicas]
    urls = [fresh_copy(media, JFK_FLAC, f"scale-{i}.wav", seed=i) for i in range(4)]
    jobs = await asyncio.gather(*(ws_job(gateway, {"url": url, "model": "tiny.en"}) for url in urls))
    assert all(job.messages[-1]["type"] == "complete" for job in jobs), [job.messages[-1] for job in jobs]
    worked = [r.transcriptions() - b for r, b in zip(replicas, before)]
    assert sum(worked) == 4 and min(worked) >= 1, f"calls per replica: {worked}"


async def test_cache_stats_and_clear_reach_every_replica(gateway, replicas):
    """Each replica keeps its own transcript cache here: the gateway adds them up and clears them all."""
    from transcription.clients import AsrClient

    async def each() -> list[int]:
        counts = []
        for replica in replicas:
            async with AsrClient(f"127.0.0.1:{replica.port}") as client:
                counts.append((await client.cache_stats()).total_files)
        return counts

    counts = await each()
    assert min(counts) >= 1, f"transcripts cached per replica: {counts}"  # the four jobs above went to both
    status, _, body = call(gateway, "GET", "/api/cache/stats")
    assert status == 200 and json.loads(body)["total_files"] == sum(counts)
    status, _, body = call(gateway, "POST", "/api/cache/clear", b"")
    assert status == 200 and json.loads(body)["files_deleted"] == sum(counts)
    assert await each() == [0, 0]


async def test_a_replica_killed_mid_job_is_replaced_and_the_transcript_is_whole(gateway, replicas, media):
    url = fresh_copy(media, media.directory / "ami-2min.wav", "failover.wav", seed=99)
    messages, killed = [], None
    async with websockets.connect(f"ws://127.0.0.1:{gateway}/ws/transcribe", max_size=None) as ws:
        await ws.send(json.dumps({"url": url, "model": "base", "language": "en"}))
        async with asyncio.timeout(300):
            while True:
                message = json.loads(await ws.recv())
                messages.append(message)
                if message["type"] == "transcription_chunk" and killed is None:
                    (killed,) = [r for r in replicas if r.metric("transcription_grpc_in_flight", method="Transcribe") == 1]
                    killed.process.send_signal(signal.SIGKILL)  # mid-file: three of four windows still to decode
                    killed.process.wait()
                if message["type"] in ("complete", "error"):
                    break
    assert messages[-1]["type"] == "complete", messages[-1]
    chunks = [m for m in messages if m["type"] == "transcription_chunk"]
    assert [c["id"] for c in chunks] == list(range(len(chunks))), "a segment was lost or sent twice"
    assert max(c["end"] for c in chunks) > 90 and len(chunks) >= 8
    assert any("moved to another server" in m.get("message", "") for m in messages if m["type"] == "status")

    survivor = next(r for r in replicas if r is not killed)
    before = survivor.transcriptions()
    again = await ws_job(gateway, {"url": fresh_copy(media, JFK_FLAC, "after-kill.wav", seed=7), "model": "tiny.en"})
    assert again.messages[-1]["type"] == "complete" and survivor.transcriptions() == before + 1

    killed.start()  # the replica returns on its address and gets calls again
    deadline, n = time.monotonic() + 60, 0
    while killed.transcriptions() == 0:
        assert time.monotonic() < deadline, "the returning replica never got a call"
        n += 1
        job = await ws_job(gateway, {"url": fresh_copy(media, JFK_FLAC, f"returning-{n}.wav", seed=100 + n), "model": "tiny.en"})
        assert job.messages[-1]["type"] == "complete"


async def test_long_audio_is_fanned_out_over_both_replicas_in_order(system, replicas, media):
    """Four copies of the two-speaker sample (2 min), cut in pauses near 40 s and 80 s, mid-conversation:
    both replicas transcribe, the client gets one ordered transcript as accurate as the whole file's."""
    write_wav(media.directory / "fanout.wav", np.tile(read_audio(SAMPLE_WAV), 4))
    url = media.url("fanout.wav")
    reference = " ".join([stm_text(SAMPLE_STM)] * 4)
    whole = await ws_job(system, {"url": url, "model": "tiny.en"})  # one call, one replica
    process, port = start_gateway(
        system,
        ASR_ADDR=",".join(f"127.0.0.1:{r.port}" for r in replicas),
        GATEWAY_FANOUT_MIN_SECONDS="60",
        GATEWAY_FANOUT_PIECE_SECONDS="40",
    )
    try:
        before = [r.transcriptions() for r in replicas]
        fanned = await ws_job(port, {"url": url, "model": "tiny.en"})
        worked = [r.transcriptions() - b for r, b in zip(replicas, before)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert fanned.messages[-1]["type"] == "complete", fanned.messages[-1]
    assert sum(worked) == 3 and min(worked) >= 1, f"pieces per replica: {worked}"
    chunks = fanned.of("transcription_chunk")
    assert [c["id"] for c in chunks] == list(range(len(chunks))), "one numbering across pieces"
    assert all(a["end"] <= b["start"] + 0.5 for a, b in zip(chunks, chunks[1:])), "in file order, no overlap at the joins"
    assert chunks[-1]["end"] > 110, "times are the file's, not the piece's"
    errors = [wer(reference, " ".join(c["text"] for c in job.of("transcription_chunk"))) for job in (whole, fanned)]
    assert errors[1] <= errors[0] + 0.03, f"WER whole {errors[0]:.3f}, fanned out {errors[1]:.3f}: words lost or doubled at the joins"
    assert fanned.messages[-1]["duration"] == pytest.approx(120, abs=0.5)
    progress = [m["progress"] for m in fanned.of("transcription_progress")]
    assert progress[-1] == 100 and progress == sorted(progress)


async def test_a_replica_killed_mid_fan_out_hands_its_piece_to_the_other(system, replicas, media):
    """Pieces go to whichever replica has a free hand; one killed mid-piece gives its piece back, and the
    client still gets one ordered transcript with nothing lost or doubled."""
    write_wav(media.directory / "fanout-kill.wav", np.tile(read_audio(SAMPLE_WAV), 4) + 2e-4)
    process, port = start_gateway(
        system,
        ASR_ADDR=",".join(f"127.0.0.1:{r.port}" for r in replicas),
        GATEWAY_FANOUT_MIN_SECONDS="60",
        GATEWAY_FANOUT_PIECE_SECONDS="40",
    )
    killed = None

    def kill_one(message: dict) -> None:
        nonlocal killed
        if message["type"] == "transcription_chunk" and killed is None:
            busy = [r for r in replicas if r.metric("transcription_grpc_in_flight", method="Transcribe") >= 1]
            killed = busy[-1]
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()

    try:
        job = await ws_job(port, {"url": media.url("fanout-kill.wav"), "model": "tiny.en"}, on_message=kill_one)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if killed is not None:
            killed.start()  # back on its address for whatever comes next
    assert killed is not None and job.messages[-1]["type"] == "complete", job.messages[-1]
    chunks = job.of("transcription_chunk")
    assert [c["id"] for c in chunks] == list(range(len(chunks))), "one numbering, nothing sent twice"
    assert all(a["end"] <= b["start"] + 0.5 for a, b in zip(chunks, chunks[1:])), "in file order"
    assert chunks[-1]["end"] > 110, "every piece arrived"
    assert any("moved to another server" in m["message"] for m in job.of("status")), "a piece was handed over"
    assert wer(" ".join([stm_text(SAMPLE_STM)] * 4), " ".join(c["text"] for c in chunks)) < 0.35


def test_the_replicas_behind_an_address():
    """What the cache endpoints and fan-out reach one by one; a dns:/// name's replicas keep the name for TLS."""
    from transcription.clients import replica_addresses

    assert replica_addresses("10.0.0.5:50052,10.0.0.6:50052") == (["10.0.0.5:50052", "10.0.0.6:50052"], "")
    assert replica_addresses("127.0.0.1:50052") == (["127.0.0.1:50052"], "")
    assert replica_addresses("dns:///asr.test:50052") == (["127.0.0.1:50052"], "asr.test")  # *.test: loopback here
    for unresolved in ("dns:///nowhere.invalid:50052", "dns:///asr-without-port"):
        assert replica_addresses(unresolved) == ([unresolved], ""), "left to the channel as one address"
