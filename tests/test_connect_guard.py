"""The downloader's last line of defence: every connection its process makes is checked.

A downloader runs as a subprocess whose "outside world" is 127.0.0.2 (the only
network DOWNLOADER_ALLOWED_NETWORKS allows). A media server there redirects to
127.0.0.1, which stands for an internal address: yt-dlp (which does its own DNS
and redirects) and aiohttp must both be stopped at the connection.
"""

from __future__ import annotations

import os
import subprocess
import threading
from functools import partial
from urllib.parse import quote

import grpc
import pytest

from conftest import NETGUARD, _Handler, _MediaHTTPServer, console_command, free_port
from transcription.clients import DownloaderClient
from transcription.errors import InvalidArgument
from transcription.v1 import downloader_pb2


@pytest.fixture(scope="module")
def outside(media):
    """A media server on 127.0.0.2: the only place the downloader may fetch from."""
    server = _MediaHTTPServer(("127.0.0.2", 0), partial(_Handler, directory=str(media.directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def downloader(tmp_path_factory):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(tmp_path_factory.mktemp("guarded")),
        "DOWNLOADER_PORT": str(port),
        "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.2/32",
    }
    process = subprocess.Popen([console_command("transcription-downloader")], env=env)
    grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=60)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def outside_url(server, path: str) -> str:
    return f"http://127.0.0.2:{server.server_address[1]}/{path}"


async def test_allowed_network_is_fetched(downloader, outside):
    async with DownloaderClient(downloader) as client:
        events = [e async for e in client.fetch(outside_url(outside, "jfk.flac"))]
    assert events[-1].HasField("ready")


@pytest.mark.parametrize("method", [downloader_pb2.FETCH_METHOD_YTDLP, downloader_pb2.FETCH_METHOD_DIRECT])
async def test_redirect_to_an_internal_address_is_refused(downloader, outside, media, method):
    inside = media.url("sample.wav")  # 127.0.0.1: not in the allowed network
    url = outside_url(outside, f"redirect-to?u={quote(inside, safe='')}")
    before = len(media.requests)
    async with DownloaderClient(downloader) as client:
        with pytest.raises(InvalidArgument, match=r"refusing to (connect|fetch).*127\.0\.0\.1"):
            [e async for e in client.fetch(url, method=method)]
        with pytest.raises(InvalidArgument, match=r"refusing to (connect|fetch).*127\.0\.0\.1"):
            await client.video_info(url)
        # still healthy afterwards
        assert [e async for e in client.fetch(outside_url(outside, "jfk.flac"))][-1].HasField("ready")
    assert len(media.requests) == before, "the internal server was reached"
