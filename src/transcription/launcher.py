"""Start the whole system on one machine: four processes, one command.

``transcription-run`` (what ``make run`` calls; also ``python -m transcription.launcher``) starts the
downloader, ASR, diarizer and gateway as separate processes, waits until each
reports SERVING on its health endpoint, prints the UI's URL, and on Ctrl-C or
SIGTERM stops them all (SIGTERM first, so in-flight streams can finish). The
test suite starts the system through the same `ServiceGroup`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transcription.settings import (
    DEFAULT_ASR_PORT,
    DEFAULT_DIARIZER_PORT,
    DEFAULT_DOWNLOADER_PORT,
    DEFAULT_GATEWAY_PORT,
    CommonSettings,
)
from transcription.tls import ClientTls, TlsConfigError, client_tls


@dataclass
class Ports:
    downloader: int = DEFAULT_DOWNLOADER_PORT
    asr: int = DEFAULT_ASR_PORT
    diarizer: int = DEFAULT_DIARIZER_PORT
    gateway: int = DEFAULT_GATEWAY_PORT

    @classmethod
    def from_env(cls) -> Ports:
        env = os.environ
        return cls(
            int(env.get("DOWNLOADER_PORT", DEFAULT_DOWNLOADER_PORT)),
            int(env.get("ASR_PORT", DEFAULT_ASR_PORT)),
            int(env.get("DIARIZER_PORT", DEFAULT_DIARIZER_PORT)),
            int(env.get("GATEWAY_PORT", DEFAULT_GATEWAY_PORT)),
        )


@dataclass
class ServiceGroup:
    ports: Ports
    env: dict[str, str] = field(default_factory=dict)  # on top of os.environ
    host: str = "127.0.0.1"
    log_dir: Path | None = None  # None: children write to this process's stderr
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _logs: list = field(default_factory=list, repr=False)  # open log files, closed by stop()
    _tls: ClientTls | None = field(default=None, repr=False)  # how the health probe connects

    def service_env(self) -> dict[str, str]:
        p = self.ports
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DOWNLOADER_HOST": self.host,
            "ASR_HOST": self.host,
            "DIARIZER_HOST": self.host,
            "GATEWAY_HOST": self.host,
            "DOWNLOADER_PORT": str(p.downloader),
            "ASR_PORT": str(p.asr),
            "DIARIZER_PORT": str(p.diarizer),
            "GATEWAY_PORT": str(p.gateway),
            "DOWNLOADER_ADDR": f"{self.host}:{p.downloader}",
            "ASR_ADDR": f"{self.host}:{p.asr}",
            "DIARIZER_ADDR": f"{self.host}:{p.diarizer}",
            **self.env,
        }

    def start(self, timeout: float = 180.0) -> None:
        env = self.service_env()
        # The health probe connects as the services' own clients do; a TLS misconfiguration stops here, before any start.
        self._tls = client_tls(_grpc_tls_settings(env))
        for name in ("downloader", "asr", "diarizer", "gateway"):
            self._spawn(name, env)
        try:
            self.wait_until_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str, timeout: float = 180.0) -> None:
        """Start one service again (one that died or was killed) on its port, and wait until all are SERVING."""
        if self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._spawn(name, self.service_env())
        self.wait_until_serving(timeout)

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name}.log").open("ab")
            self._logs.append(out)
        # A session of its own: Ctrl-C in a terminal reaches only this
        # process, which then stops the services in order with SIGTERM.
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"transcription.{name}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )

    def wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {
            "downloader": ("grpc", self.ports.downloader, "transcription.v1.Downloader"),
            "asr": ("grpc", self.ports.asr, "transcription.v1.Asr"),
            "diarizer": ("grpc", self.ports.diarizer, "transcription.v1.Diarizer"),
            "gateway": ("http", self.ports.gateway, "/health"),
        }
        while pending:
            for name, (kind, port, target) in list(pending.items()):
                code = self.processes[name].poll()
                if code is not None:
                    raise RuntimeError(f"{name} exited with code {code} during start-up")
                ready = _grpc_serving(self.host, port, target, self._tls) if kind == "grpc" else _http_ok(self.host, port, target)
                if ready:
                    print(f"  {name:<10} SERVING on {self.host}:{port}", flush=True)
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not SERVING after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.25)

    def stop(self, grace: float = 15.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.ports.gateway}/"


def _grpc_tls_settings(env: dict[str, str]) -> CommonSettings:
    """The ``GRPC_TLS_*`` settings of the environment the services are started with (not this process's)."""
    return CommonSettings(**{key.lower(): value for key, value in env.items() if key.lower().startswith("grpc_tls_")})


def _grpc_channel(target: str, tls: ClientTls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls.credentials, options=tls.channel_options())


def _grpc_serving(host: str, port: int, service: str, tls: ClientTls | None = None) -> bool:
    with _grpc_channel(f"{host}:{port}", tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _http_ok(host: str, port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as response:
            return response.status == 200 and "status" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def split_cores(environ: dict[str, str], cores: int) -> dict[str, str]:
    """Thread settings that share the machine between ASR and diarizer instead of oversubscribing it.

    The diarizer keeps DIARIZER_THREADS (1 by default: its segmentation LSTM is
    fastest on one thread); the ASR gets the other cores. Values already set win.
    """
    diarizer = int(environ.get("DIARIZER_THREADS") or 1)
    split = {"DIARIZER_THREADS": str(diarizer)}
    if not int(environ.get("ASR_CPU_THREADS") or 0):
        split["ASR_CPU_THREADS"] = str(max(1, cores - diarizer))
    return split


def main() -> None:
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    group = ServiceGroup(Ports.from_env(), host=host, env=split_cores(dict(os.environ), os.cpu_count() or 1))
    print("Starting downloader, ASR, diarizer and gateway (the first start loads the models)...", flush=True)
    try:
        group.start()
    except KeyboardInterrupt:  # Ctrl-C while the models load: start() has stopped them
        print("Stopped.", flush=True)
        return
    except (RuntimeError, TimeoutError, TlsConfigError) as error:
        sys.exit(f"start-up failed: {error}")
    print(f"\nReady: open {group.url}  (Ctrl-C stops everything)\n", flush=True)
    stop = False

    def request_stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop:
            for name, process in group.processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; stopping the rest", file=sys.stderr)
                    stop = True
            time.sleep(0.5)
    finally:
        print("Stopping...", flush=True)
        group.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
