"""Downloader core logic in-process: the address guard, atomic store, size limits."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import SAMPLE_WAV
from transcription.downloader import netguard
from transcription.downloader.events import CacheHit, Ready
from transcription.downloader.fetcher import Fetcher
from transcription.downloader.netguard import AddressPolicy, parse_networks
from transcription.downloader.server import build_fetcher
from transcription.downloader.settings import DownloaderSettings
from transcription.downloader.store import AudioStore
from transcription.errors import InvalidArgument, Unavailable
from transcription.v1 import downloader_pb2


def fetcher(tmp_path, allowed: str = "", max_bytes: int = 10 * 1024**2, **settings) -> Fetcher:
    """A fetcher as the service builds it, on a store under ``tmp_path`` (no process-wide connect guard)."""
    defaults = {"downloader_connect_timeout_seconds": 5, "downloader_read_timeout_seconds": 5, "downloader_retries": 1}
    return build_fetcher(
        DownloaderSettings(
            data_dir=tmp_path, downloader_allowed_networks=allowed, downloader_max_bytes=max_bytes, **{**defaults, **settings}
        )
    )


async def run(f: Fetcher, url: str, **options) -> list:
    return [event async for event in f.fetch(url, **options)]


# One address inside every refused range, each a case ``ipaddress.is_global``
# alone would not settle the same way on every Python: the project's own table
# must refuse it. `test_every_refused_range_has_a_case` keeps this list complete.
REFUSED = [
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.254",
    "192.0.0.8",  # CVE-2024-4032: Python 3.11.7 calls it global
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fd00::1",
    "ff02::1",
    "100::1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:db8::1",
    "3fff::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 /96 of 169.254.169.254
    "64:ff9b::c000:8",  # NAT64 /96 of 192.0.0.8
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215), unless its prefix is configured
]
# Just outside the refused ranges, and the embedded forms of a public address.
ALLOWED = [
    "8.8.8.8",
    "93.184.215.14",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.1",
    "192.0.1.1",
    "192.88.98.1",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::",
]


@pytest.mark.parametrize("address", REFUSED)
def test_policy_refuses_internal_and_special_addresses(address):
    assert not AddressPolicy([]).is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_policy_allows_public_addresses(address):
    assert AddressPolicy([]).is_allowed(ipaddress.ip_address(address))


def test_every_refused_range_has_a_case():
    addresses = [ipaddress.ip_address(a) for a in REFUSED]
    for network in netguard.REFUSED_IPV4 + netguard.REFUSED_IPV6:
        assert any(a in network for a in addresses), f"no test address inside {network}"


@pytest.mark.parametrize(
    "prefix_length, address",
    # RFC 6052 section 2.4's own examples: 192.0.2.33 under each prefix length
    [
        (32, "2001:db8:c000:221::"),
        (40, "2001:db8:1c0:2:21::"),
        (48, "2001:db8:122:c000:2:2100::"),
        (56, "2001:db8:122:3c0:0:221::"),
        (64, "2001:db8:122:344:c0:2:2100::"),
        (96, "2001:db8:122:344::192.0.2.33"),
    ],
)
def test_nat64_embedding_follows_rfc_6052(prefix_length, address):
    assert netguard.nat64_embedded(ipaddress.ip_address(address), prefix_length) == ipaddress.ip_address("192.0.2.33")


# A network-specific NAT64 prefix of each length, with 10.0.0.1 (refused) and
# 8.8.8.8 (allowed) embedded, laid out as RFC 6052 section 2.2 says.
@pytest.mark.parametrize(
    "prefix, internal, public",
    [
        ("2a00:1::/32", "2a00:1:a00:1::", "2a00:1:808:808::"),
        ("2a00:1:200::/40", "2a00:1:20a:0:1::", "2a00:1:208:808:8::"),
        ("2a00:1:2::/48", "2a00:1:2:a00:0:100::", "2a00:1:2:808:8:800::"),
        ("2a00:1:2:300::/56", "2a00:1:2:30a:0:1::", "2a00:1:2:308:8:808::"),
        ("2a00:1:2:3::/64", "2a00:1:2:3:a:0:100:0", "2a00:1:2:3:8:808:800:0"),
        ("2a00:1:2:3::/96", "2a00:1:2:3::a00:1", "2a00:1:2:3::808:808"),
        ("64:ff9b:1:ab::/64", "64:ff9b:1:ab:a:0:100:0", "64:ff9b:1:ab:8:808:800:0"),
    ],
)
def test_configured_nat64_prefix_is_judged_by_the_embedded_ipv4(prefix, internal, public):
    plain = AddressPolicy([])
    policy = AddressPolicy([], netguard.parse_nat64_prefixes(prefix))
    assert plain.is_allowed(ipaddress.ip_address(internal)) is prefix.startswith("2a00"), "global unicast passes unless configured"
    assert not policy.is_allowed(ipaddress.ip_address(internal))
    assert policy.is_allowed(ipaddress.ip_address(public))


@pytest.mark.parametrize("spec", ["10.0.0.0/8", "2a00:1::/33", "nonsense"])
def test_nat64_prefixes_must_be_ipv6_of_an_rfc_6052_length(spec):
    with pytest.raises(ValueError):
        netguard.parse_nat64_prefixes(spec)


def test_policy_allows_configured_networks():
    policy = AddressPolicy(parse_networks("127.0.0.0/8, ::1/128"))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.5"))
    assert policy.is_allowed(ipaddress.ip_address("::1"))
    assert policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))
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


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://media.test/x.wav", "gopher://media.test/", "data:audio/wav;base64,AAAA", "javascript:alert(1)"]
)
async def test_only_http_and_https_are_fetched(tmp_path, url):
    with pytest.raises(InvalidArgument, match="unsupported URL scheme"):
        await run(fetcher(tmp_path, allowed="127.0.0.0/8"), url)


async def test_ytdlp_route_checks_the_host_before_yt_dlp_connects(tmp_path, media):
    """yt-dlp resolves names itself: the fetcher resolves and checks first (the connect guard is not installed here)."""
    f = fetcher(tmp_path)
    before = len(media.requests)
    with pytest.raises(InvalidArgument, match="refusing to fetch from media.test"):
        await run(f, media.url("sample.wav", host="media.test"), method=downloader_pb2.FETCH_METHOD_YTDLP)
    assert len(media.requests) == before


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
    assert cleared["files_deleted"] == 4 and f.store.stats()["total_files"] == 0


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


# (inet_aton spellings such as 0x7f.0.0.1 go through DNS resolution, where the
# resolver and the connect guard check the address they become)
@pytest.mark.parametrize("host", ["①②⑦.0.0.1", "１２７.０.０.１"])
async def test_other_spellings_of_loopback_are_refused(tmp_path, media, host):
    before = len(media.requests)
    with pytest.raises(InvalidArgument, match="refusing to fetch"):
        await run(fetcher(tmp_path), f"http://{host}:{media.port}/sample.wav")
    assert len(media.requests) == before
