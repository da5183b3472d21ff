"""Downloader core logic in-process: the address guard, atomic store, size limits."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import SAMPLE_WAV
from downloader.events import CacheHit, Ready
from downloader.fetcher import Fetcher
from downloader.netguard import AddressPolicy, parse_networks
from downloader.store import AudioStore
from transcription.errors import InvalidArgument, Unavailable


def fetcher(tmp_path, allowed: str = "", max_bytes: int = 10 * 1024**2) -> Fetcher:
    return Fetcher(
        AudioStore(tmp_path / "store"), AddressPolicy(parse_networks(allowed)), max_bytes=max_bytes, connect_timeout=5, read_timeout=5
    )


async def run(f: Fetcher, url: str) -> list:
    return [event async for event in f.fetch(url)]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_policy_refuses_internal_addresses_by_default(address):
    assert not AddressPolicy([]).is_allowed(ipaddress.ip_address(address))


def test_policy_allows_public_and_configured_networks():
    assert AddressPolicy([]).is_allowed(ipaddress.ip_address("93.184.215.14"))
    policy = AddressPolicy(parse_networks("127.0.0.0/8, ::1/128"))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.5"))
    assert policy.is_allowed(ipaddress.ip_address("::1"))
    assert not policy.is_allowed(ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(ValueError):
        parse_networks("not-a-network")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/sample.wav",
        "http://media.test:{port}/sample.wav",
        "http://[::1]:{port}/sample.wav",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_fetch_refuses_loopback_and_private_without_allow_list(tmp_path, media, url):
    f = fetcher(tmp_path)
    before = len(media.requests)
    with pytest.raises(InvalidArgument, match="refusing to fetch"):
        await run(f, url.format(port=media.port))
    assert len(media.requests) == before, "the guard must fire before any request is sent"
    assert not any(f.store.tmp_dir.iterdir())


async def test_redirect_into_a_private_network_is_refused(tmp_path, media):
    """The first hop is allowed, the redirect's target is not: every hop is checked."""
    f = fetcher(tmp_path, allowed="127.0.0.1/32")
    with pytest.raises(InvalidArgument, match="refusing to fetch from 10.1.2.3"):
        await run(f, media.url("redirect-to?u=http%3A//10.1.2.3/x.wav"))
    with pytest.raises(InvalidArgument, match="refusing to fetch from ::1"):
        await run(f, media.url(f"redirect-to?u=http%3A//[::1]%3A{media.port}/sample.wav"))


async def test_fetch_stores_atomically_and_hits_the_cache(tmp_path, media):
    f = fetcher(tmp_path, allowed="127.0.0.0/8")
    url = media.url("sample.wav")
    first = await run(f, url)
    assert isinstance(first[-1], Ready) and not first[-1].from_cache
    stored = f.store.audio_path(first[-1].audio.content_id)
    assert stored.read_bytes() == SAMPLE_WAV.read_bytes()
    second = await run(f, url)
    assert isinstance(second[0], CacheHit) and second[-1].from_cache
    assert f.store.stats()["total_files"] == 1 and f.store.stats()["metadata_files"] == 1
    # A record whose audio vanished is a miss, not an error.
    stored.unlink()
    third = await run(f, url)
    assert not third[-1].from_cache and stored.exists()
    cleared = f.store.clear()
    assert cleared["files_deleted"] == 3 and f.store.stats()["total_files"] == 0


async def test_interrupted_and_oversized_downloads_leave_nothing(tmp_path, media):
    f = fetcher(tmp_path, allowed="127.0.0.0/8")
    with pytest.raises(Unavailable, match="interrupted|ended after"):
        await run(f, media.url("truncated.wav"))
    small = fetcher(tmp_path / "small", allowed="127.0.0.0/8", max_bytes=100_000)
    with pytest.raises(InvalidArgument, match="limit"):
        await run(small, media.url("sample.wav"))
    for store in (f.store, small.store):
        assert not any(store.tmp_dir.iterdir())
        assert store.stats()["total_files"] == 0 and store.stats()["metadata_files"] == 0


def test_store_sweeps_partial_files_left_by_a_crash(tmp_path):
    store = AudioStore(tmp_path)
    partial = store.new_tmp_file()
    partial.write_bytes(b"half a download")
    AudioStore(tmp_path)  # a restarted service
    assert not partial.exists()


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    ],
)
def test_policy_judges_ipv6_by_the_ipv4_it_embeds(address):
    assert not AddressPolicy([]).is_allowed(ipaddress.ip_address(address))


# (inet_aton spellings such as 0x7f.0.0.1 go through DNS resolution, where the
# resolver and the connect guard check the address they become)
@pytest.mark.parametrize("host", ["①②⑦.0.0.1", "１２７.０.０.１"])
async def test_other_spellings_of_loopback_are_refused(tmp_path, media, host):
    before = len(media.requests)
    with pytest.raises(InvalidArgument, match="refusing to fetch"):
        await run(fetcher(tmp_path), f"http://{host}:{media.port}/sample.wav")
    assert len(media.requests) == before
