"""Fixtures: the real system on loopback ports, a local media server, shared helpers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import av
import grpc
import jiwer
import numpy as np
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
# The recordings ship in the repository (tests/data/README.md); TESTDATA_DIR points elsewhere.
TESTDATA = Path(os.environ.get("TESTDATA_DIR") or TESTS / "data")
if not (TESTDATA / "jfk" / "jfk.flac").is_file():
    raise RuntimeError(f"the test recordings are not at {TESTDATA}; set TESTDATA_DIR to a folder laid out like tests/data")
sys.path.insert(0, str(TESTS / "netguard"))

import loopback_only  # noqa: E402

loopback_only.install()

from transcription.launcher import Ports, ServiceGroup  # noqa: E402

# On PYTHONPATH of every subprocess a test starts: its sitecustomize keeps it on loopback.
NETGUARD = TESTS / "netguard"


def console_command(name: str) -> str:
    """A console command the package installs (pyproject's [project.scripts]), from this environment."""
    return str(Path(sys.executable).with_name(name))


SAMPLE_WAV = TESTDATA / "pyannote-sample" / "sample.wav"
SAMPLE_STM = TESTDATA / "pyannote-sample" / "sample.stm"
JFK_FLAC = TESTDATA / "jfk" / "jfk.flac"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
AMI_CLIPS = [TESTDATA / "ami-debug" / f"{name}.wav" for name in ("dev00", "dev01", "tst00", "tst01")]


# -- scoring -------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower-case, punctuation stripped (apostrophes too), spaces collapsed."""
    text = re.sub(r"[^\w\s]", "", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))


def stm_text(path: Path) -> str:
    return " ".join(line.split(maxsplit=5)[5] for line in path.read_text().splitlines() if line.strip())


# -- local media server ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lone_diarizer(pipeline: str, data_dir: Path):
    """A diarizer service on its own, configured with DIARIZER_PIPELINE=pipeline and no HF_TOKEN: its address."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    env.update(
        PYTHONPATH=str(NETGUARD),
        DATA_DIR=str(data_dir),
        DIARIZER_PORT=str(port),
        DIARIZER_PIPELINE=pipeline,
        DIARIZER_PRELOAD="false",  # a pipeline that cannot load is reported per request
        HF_HUB_OFFLINE="1",  # no hub here
    )
    process = subprocess.Popen([console_command("transcription-diarizer")], env=env, stderr=subprocess.DEVNULL)
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    @property
    def directory_path(self) -> Path:
        return Path(self.directory)

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/redirect-to?u="):
            self.send_response(302)
            self.send_header("Location", unquote(self.path.removeprefix("/redirect-to?u=")))
            self.end_headers()
            return
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path.removeprefix("/redirect/"))
            self.end_headers()
            return
        if self.path.startswith("/gated/"):
            # Half the file, then nothing until the test opens this name's gate.
            body = (self.directory_path / self.path.removeprefix("/gated/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.gate(self.path).wait(timeout=120)
            self.wfile.write(body[len(body) // 2 :])
            return
        if self.path == "/truncated.wav":
            # Promises more bytes than it sends, then hangs up mid-body.
            self.send_response(200)
            self.send_header("Content-Length", str(1_000_000))
            self.end_headers()
            self.wfile.write(SAMPLE_WAV.read_bytes()[:50_000])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class _MediaHTTPServer(ThreadingHTTPServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._gates_lock = threading.Lock()

    def gate(self, path: str) -> threading.Event:
        """The event a ``/gated/<name>`` response waits on before its second half."""
        with self._gates_lock:
            return self._gates.setdefault(path, threading.Event())


@dataclass
class MediaServer:
    directory: Path
    port: int
    server: _MediaHTTPServer
    requests: list[str] = field(default_factory=list)

    def open_gate(self, path: str) -> None:
        self.server.gate("/" + path).set()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r == "/" + path)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def silent_flac(seconds: float, rate: int = 16_000) -> bytes:
    """A valid FLAC file of ``seconds`` of silence, written by hand: about 15 bytes per 4 seconds.

    Every frame is the largest FLAC allows (65,535 samples) holding one CONSTANT
    subframe, so eight hours take ~100 kB and no encoder has to run over them.
    """
    block, total = 65_535, int(seconds * rate)
    info = block.to_bytes(2, "big") * 2 + bytes(6)  # block sizes; frame sizes unknown
    info += ((rate << 44) | (15 << 36) | total).to_bytes(8, "big") + bytes(16)  # mono, 16-bit; no MD5
    out = bytearray(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)
    for number, start in enumerate(range(0, total, block)):
        size = min(block, total - start)
        # sync + fixed blocking, block size in 16 bits after the header, rate/size/mono from STREAMINFO
        header = bytes([0xFF, 0xF8, 0x70, 0x00]) + chr(number).encode("utf-8") + (size - 1).to_bytes(2, "big")
        frame = header + bytes([_crc8(header)]) + b"\x00\x00\x00"  # CONSTANT subframe, value 0
        out += frame + _crc16(frame).to_bytes(2, "big")
    return bytes(out)


def read_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz, decoded with PyAV."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        frames = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for f in resampler.resample(frame)]
    return np.concatenate(frames)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaServer:
    """A real HTTP server on loopback serving the test audio."""
    directory = tmp_path_factory.mktemp("media")
    (directory / "sample.wav").symlink_to(SAMPLE_WAV)
    (directory / "e2e.wav").symlink_to(SAMPLE_WAV)  # only the end-to-end test fetches this name
    (directory / "jfk.flac").symlink_to(JFK_FLAC)
    (directory / "not-audio.txt").write_text("this is not audio\n" * 100)
    # Four 30-second AMI clips joined: two minutes, four decoding windows.
    write_wav(directory / "ami-2min.wav", np.concatenate([read_audio(p) for p in AMI_CLIPS]))
    # The same sample under another name, for tests that need a fresh download.
    (directory / "sample-copy.wav").write_bytes(SAMPLE_WAV.read_bytes())
    server = _MediaHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield MediaServer(directory, server.server_address[1], server, server.requests)
    server.shutdown()


def fresh_copy(media: MediaServer, source: Path, name: str, seed: int) -> str:
    """``source`` with an inaudible offset, served as ``name``: new bytes (one per seed), so no cache knows them."""
    samples = read_audio(source) + np.random.default_rng(seed).normal(0, 1e-4, 1).astype(np.float32)
    write_wav(media.directory / name, samples)
    return media.url(name)


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One HTTP request with full control of the headers (Host included); (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="session")
def outside(media):
    """A media server on 127.0.0.2: the only place `guarded_downloader` may fetch from (the "outside world")."""
    server = _MediaHTTPServer(("127.0.0.2", 0), partial(_Handler, directory=str(media.directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


class Address(str):
    """A service's host:port, with the data directory it writes to."""

    data_dir: Path


@pytest.fixture(scope="session")
def guarded_downloader(tmp_path_factory):
    """A downloader that may fetch only from 127.0.0.2 (`outside`): loopback is "inside" to it."""
    port = free_port()
    address = Address(f"127.0.0.1:{port}")
    address.data_dir = tmp_path_factory.mktemp("guarded")
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(address.data_dir),
        "DOWNLOADER_PORT": str(port),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.2/32",
    }
    process = subprocess.Popen([console_command("transcription-downloader")], env=env)
    grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=60)
    yield address
    process.terminate()
    process.wait(timeout=30)


def outside_url(server, path: str) -> str:
    return f"http://127.0.0.2:{server.server_address[1]}/{path}"


# -- the system under test ---------------------------------------------------------


def start_gateway(system, **env) -> tuple[subprocess.Popen, int]:
    """Another gateway in front of the system's services, with other settings."""
    port = free_port()
    process = subprocess.Popen(
        [console_command("transcription-gateway")],
        env={
            **os.environ,
            "PYTHONPATH": str(NETGUARD),
            "GATEWAY_PORT": str(port),
            "DOWNLOADER_ADDR": f"127.0.0.1:{system.ports.downloader}",
            "ASR_ADDR": f"127.0.0.1:{system.ports.asr}",
            "DIARIZER_ADDR": f"127.0.0.1:{system.ports.diarizer}",
            **env,
        },
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
    return process, port


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    """All four services as subprocesses on free loopback ports."""
    data = tmp_path_factory.mktemp("data")
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    metrics_ports = {name: free_port() for name in ("downloader", "asr", "diarizer")}
    group = ServiceGroup(
        ports,
        env={
            "DATA_DIR": str(data),
            "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "PYTHONPATH": str(NETGUARD),
            "GRPC_GRACE_SECONDS": "2",
            "LOG_LEVEL": "INFO",
            # no model hub here: a name that is not bundled must fail at once, not retry
            "HF_HUB_OFFLINE": "1",
            # an allow-listed hub name takes the token route to the hub (which fails here)
            "ASR_MODEL_ALLOWLIST": "org/no-such-model",
            # many tests start jobs from 127.0.0.1 within a minute; the limit is tested on a gateway of its own
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
            **{f"{name.upper()}_METRICS_PORT": str(port) for name, port in metrics_ports.items()},
        },
        log_dir=data / "logs",
    )
    group.data_dir = data
    group.metrics_ports = metrics_ports
    yield from running(group)


def running(group: ServiceGroup):
    """Start ``group`` (logs in ``group.data_dir / "logs"``), yield it, stop it: for fixtures, as ``yield from running(group)``.

    The logs' tails are printed when the start fails, and those with a traceback at the end.
    """
    logs = group.data_dir / "logs"
    try:
        group.start(timeout=300)
    except Exception:
        for log in sorted(logs.glob("*.log")):
            print(f"----- {log.name}\n{log.read_text()[-5000:]}")
        raise
    yield group
    group.stop()
    for log in sorted(logs.glob("*.log")):
        text = log.read_text()
        if "Traceback" in text:
            print(f"----- {log.name} (has a traceback)\n{text[-5000:]}")


@dataclass
class Received:
    messages: list[dict]
    arrived: list[float] = field(default_factory=list)  # time.monotonic() as each message came (bench/load.py)
    headers: dict[str, str] = field(default_factory=dict)  # the handshake's response headers

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


async def ws_job(system: ServiceGroup | int, request: dict, timeout: float = 300, on_message=None, subprotocols=None) -> Received:
    """Send one request on /ws/transcribe (of the system, or of a gateway on that port) and collect messages up to complete/error.

    ``on_message(message)``, when given, sees each message as it arrives (to inject a fault mid-job).
    """
    port = system if isinstance(system, int) else system.ports.gateway
    uri = f"ws://127.0.0.1:{port}/ws/transcribe"
    received = Received([])
    async with websockets.connect(uri, max_size=None, subprotocols=subprotocols) as ws:
        received.headers = dict(ws.response.headers)
        await ws.send(json.dumps(request))
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await ws.recv())
                received.messages.append(message)
                received.arrived.append(time.monotonic())
                if on_message is not None:
                    on_message(message)
                if message["type"] in ("complete", "error"):
                    return received


def final_segments(received: Received) -> list[dict]:
    """Segments as a client that applies speaker_update holds them at the end, in time order.

    An entry with ``split_from`` is a new part of a segment split where its
    speaker changed; an entry with ``text`` replaces the segment's first part.
    """
    segments = {str(c["id"]): dict(c) for c in received.of("transcription_chunk")}
    for update in received.of("speaker_update"):
        for item in update["segments"]:
            segments.setdefault(str(item["id"]), {}).update(item)
    return sorted(segments.values(), key=lambda s: (s["start"], str(s["id"])))
