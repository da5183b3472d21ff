"""The downloader's last line of defence: every connection its process makes is checked.

A downloader runs as a subprocess whose "outside world" is 127.0.0.2 (the only
network DOWNLOADER_ALLOWED_NETWORKS allows). A media server there redirects to
127.0.0.1, which stands for an internal address: yt-dlp (which does its own DNS
and redirects) and aiohttp must both be stopped at the connection.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from conftest import outside_url
from transcription.clients import DownloaderClient
from transcription.errors import InvalidArgument
from transcription.v1 import downloader_pb2


async def test_allowed_network_is_fetched(guarded_downloader, outside):
    async with DownloaderClient(guarded_downloader) as client:
        events = [e async for e in client.fetch(outside_url(outside, "jfk.flac"))]
    assert events[-1].HasField("ready")


@pytest.mark.parametrize("method", [downloader_pb2.FETCH_METHOD_YTDLP, downloader_pb2.FETCH_METHOD_DIRECT])
async def test_redirect_to_an_internal_address_is_refused(guarded_downloader, outside, media, method):
    inside = media.url("sample.wav")  # 127.0.0.1: not in the allowed network
    url = outside_url(outside, f"redirect-to?u={quote(inside, safe='')}")
    before = len(media.requests)
    async with DownloaderClient(guarded_downloader) as client:
        with pytest.raises(InvalidArgument, match=r"refusing to (connect|fetch).*127\.0\.0\.1"):
            [e async for e in client.fetch(url, method=method)]
        with pytest.raises(InvalidArgument, match=r"refusing to (connect|fetch).*127\.0\.0\.1"):
            await client.video_info(url)
        # still healthy afterwards
        assert [e async for e in client.fetch(outside_url(outside, "jfk.flac"))][-1].HasField("ready")
    assert len(media.requests) == before, "the internal server was reached"
