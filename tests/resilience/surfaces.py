"""What every bad-input case checks after it was refused, shared by the corpus files in this folder.

A refused case must leave the system as it found it: every service SERVING, no
partial download in ``downloads/tmp``, and no file written anywhere under the
data directory (logs aside). `Unchanged` takes the snapshot before a case and
checks it after.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import websockets

SERVING = {"downloader": "SERVING", "asr": "SERVING", "diarizer": "SERVING"}


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
        return json.loads(response.read())


def data_files(data_dir: Path) -> set[Path]:
    """Every file under the data directory but the logs and the (lazily materialised) model folders."""
    skipped = ("logs", "models", "yt-dlp-cache")
    return {p for p in data_dir.rglob("*") if p.is_file() and p.relative_to(data_dir).parts[0] not in skipped}


class Unchanged:
    """``with Unchanged(system): ...``: nothing new on disk afterwards and every service still SERVING."""

    def __init__(self, system, gateway_port: int | None = None):
        self.data_dir = system.data_dir
        self.port = gateway_port or system.ports.gateway

    def __enter__(self):
        self.before = data_files(self.data_dir)
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            return False
        assert health(self.port)["services"] == SERVING
        assert not any((self.data_dir / "downloads" / "tmp").iterdir()), "a partial file was left behind"
        new = data_files(self.data_dir) - self.before
        assert not new, f"a refused request wrote {sorted(map(str, new))}"
        return False


async def ws_messages(port: int, *frames: str | bytes, timeout: float = 120) -> list[dict]:
    """Send raw frames on /ws/transcribe, then collect messages until an error/complete or the socket closes.

    A close ends the list with ``{"type": "closed", "code": <close code>}``.
    """
    messages: list[dict] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/transcribe", max_size=None, open_timeout=30) as ws:
        for frame in frames:
            await ws.send(frame)
        try:
            while True:
                async with asyncio.timeout(timeout):
                    message = json.loads(await ws.recv())
                messages.append(message)
                if message["type"] in ("complete", "error"):
                    return messages
        except websockets.ConnectionClosed as closed:
            # the gateway may refuse at the protocol level (1009: message too big, 1008: policy)
            return [*messages, {"type": "closed", "code": closed.rcvd.code if closed.rcvd else None}]


def short_error(message: str, limit: int = 600) -> None:
    """An error a person can read: no traceback, not an echo of a megabyte of input."""
    assert "Traceback" not in message and len(message) <= limit, message[:2000]
