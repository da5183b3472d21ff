"""Hostile URLs on every surface that takes one: the WebSocket, /api/video-info, and the downloader's
Fetch and VideoInfo called directly.

The downloader here is `guarded_downloader`: its only "outside world" is 127.0.0.2 (`outside`), so
127.0.0.1, where the test media server listens, stands for an internal address. Each case must be
refused with a message naming the reason, without a single request reaching the inside server.
Private and public addresses appear only as inputs; the test network guard (tests/netguard) would
stop a connection to them even if the downloader's own guard were broken.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from surfaces import SERVING, health, short_error, ws_messages

from conftest import call, outside_url, start_gateway
from transcription.clients import DownloaderClient
from transcription.errors import ServiceError

INSIDE = "refusing to fetch from"  # the downloader's guard: a private, loopback or link-local address
SCHEME = "unsupported URL scheme"
NOT_CANONICAL = "is not a canonical IPv4 address"

# (URL, with {in} = the inside media server's port and {out} = outside's base URL, or a function of
# the two; part of the error)
CASES = {
    "file": ("file:///etc/passwd", f"{SCHEME} 'file'"),
    "ftp": ("ftp://127.0.0.2/audio.mp3", f"{SCHEME} 'ftp'"),
    "data": ("data:audio/wav;base64,UklGRiQAAABXQVZF", f"{SCHEME} 'data'"),
    "gopher": ("gopher://127.0.0.1:{in}/_GET%20/sample.wav", f"{SCHEME} 'gopher'"),
    "javascript": ("javascript:alert(document.cookie)", f"{SCHEME} 'javascript'"),
    "no scheme": ("127.0.0.1:{in}/sample.wav", SCHEME),
    "no host": ("http:///sample.wav", "no host"),
    "userinfo": ("http://a@127.0.0.1:{in}/sample.wav", INSIDE),
    "userinfo naming the outside": ("http://127.0.0.2:80@127.0.0.1:{in}/sample.wav", INSIDE),
    "userinfo with a fragment": ("http://127.0.0.1:{in}#@127.0.0.2/sample.wav", INSIDE),
    "loopback": ("http://127.0.0.1:{in}/sample.wav", INSIDE),
    # legacy IPv4 spellings: the C library would read them as 127.0.0.1; the URL parser refuses them outright
    "decimal IP": ("http://2130706433:{in}/sample.wav", NOT_CANONICAL),
    "hex IP": ("http://0x7f000001:{in}/sample.wav", INSIDE),
    "octal IP": ("http://0177.0.0.1:{in}/sample.wav", NOT_CANONICAL),
    "short IP": ("http://127.1:{in}/sample.wav", NOT_CANONICAL),
    "fullwidth digits": ("http://１２７.０.０.１:{in}/sample.wav", INSIDE),
    "IPv6 loopback": ("http://[::1]:{in}/sample.wav", INSIDE),
    "IPv4-mapped IPv6": ("http://[::ffff:127.0.0.1]:{in}/sample.wav", INSIDE),
    "IPv4-mapped IPv6, hex": ("http://[::ffff:7f00:1]:{in}/sample.wav", INSIDE),
    "unspecified": ("http://0.0.0.0:{in}/sample.wav", INSIDE),
    "private": ("http://10.0.0.1/sample.wav", INSIDE),
    "cloud metadata": ("http://169.254.169.254/latest/meta-data/", INSIDE),
    "a name for loopback": ("http://media.test:{in}/sample.wav", INSIDE),
    "localhost": ("http://localhost:{in}/sample.wav", INSIDE),
    "IDN name for loopback": ("http://bücher.test:{in}/sample.wav", INSIDE),
    "redirect inside": (lambda inside, out: f"{out}redirect-to?u={quote(f'http://127.0.0.1:{inside}/sample.wav', safe='')}", INSIDE),
    "redirect chain to metadata": (
        lambda inside, out: (
            f"{out}redirect-to?u=" + quote(f"{out}redirect-to?u=" + quote("http://169.254.169.254/latest/", safe=""), safe="")
        ),
        INSIDE,
    ),
    "10,000 characters": ("{out}sample.wav?" + "a" * 10_000, "at most 8,192 are accepted"),
    "unresolvable": ("http://nowhere.invalid/sample.wav", "cannot resolve host nowhere.invalid"),
}


def _url(case: str, media, outside) -> str:
    template, out = CASES[case][0], outside_url(outside, "")
    if callable(template):
        return template(media.port, out)
    return template.replace("{in}", str(media.port)).replace("{out}", out)


@pytest.fixture(scope="module")
def guarded_gateway(system, guarded_downloader):
    """A gateway whose downloader treats loopback as internal."""
    process, port = start_gateway(system, DOWNLOADER_ADDR=guarded_downloader)
    yield port
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def inside_untouched(media, guarded_downloader):
    before, tmp = len(media.requests), guarded_downloader.data_dir / "downloads" / "tmp"
    yield
    assert len(media.requests) == before, f"the inside server was reached: {media.requests[before:]}"
    assert not tmp.exists() or not any(tmp.iterdir())


def _check(message: str, case: str) -> None:
    assert CASES[case][1] in message, message
    short_error(message, limit=12_000 if case == "10,000 characters" else 600)


@pytest.mark.parametrize("case", CASES)
async def test_websocket(guarded_gateway, media, outside, inside_untouched, case):
    messages = await ws_messages(guarded_gateway, json.dumps({"url": _url(case, media, outside), "model": "tiny.en"}))
    assert messages[-1]["type"] == "error", messages
    _check(messages[-1]["error"], case)
    assert health(guarded_gateway)["services"] == SERVING


@pytest.mark.parametrize("case", CASES)
def test_video_info(guarded_gateway, media, outside, inside_untouched, case):
    status, headers, body = call(guarded_gateway, "POST", "/api/video-info", json.dumps({"url": _url(case, media, outside)}).encode())
    assert 400 <= status < 500 and headers["content-type"] == "application/json", (status, body[:300])
    _check(json.loads(body)["error"], case)


@pytest.mark.parametrize("case", CASES)
async def test_grpc_fetch_and_video_info(guarded_downloader, media, outside, inside_untouched, case):
    url = _url(case, media, outside)
    async with DownloaderClient(guarded_downloader) as client:
        with pytest.raises(ServiceError) as fetch:
            [event async for event in client.fetch(url)]
        with pytest.raises(ServiceError) as info:
            await client.video_info(url)
    for refused in (fetch.value, info.value):
        assert refused.status == "INVALID_ARGUMENT", (refused.status, refused.message)
        _check(refused.message, case)
