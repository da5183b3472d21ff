"""The result caches (transcripts, diarizations): bounded, least recently used out first."""

from __future__ import annotations

import os
import time

from transcription.jsoncache import JsonCache


def test_cache_stays_under_its_byte_limit_and_keeps_what_was_used(tmp_path):
    entry = {"text": "x" * 1000}
    cache = JsonCache(tmp_path, max_bytes=5_500)  # room for five entries of ~1 kB
    for number in range(5):
        cache.put(f"key-{number}", entry)
        os.utime(cache._path(f"key-{number}"), (time.time() - 100 + number,) * 2)  # distinct ages, oldest first
    assert cache.get("key-0") == entry  # a hit is a use: key-0 becomes the newest
    cache.put("key-5", entry)
    assert cache.stats()["total_bytes"] <= 5_500
    assert cache.get("key-1") is None, "the least recently used entry went"
    assert cache.get("key-0") == entry and cache.get("key-5") == entry


def test_an_entry_larger_than_the_limit_is_kept_alone(tmp_path):
    cache = JsonCache(tmp_path, max_bytes=100)
    cache.put("small", {"a": 1})
    cache.put("big", {"text": "y" * 500})
    assert cache.get("big") is not None and cache.get("small") is None


def test_unbounded_by_default_and_clear_resets(tmp_path):
    cache = JsonCache(tmp_path)
    for number in range(20):
        cache.put(str(number), {"n": number})
    assert cache.stats()["total_files"] == 20
    assert cache.clear()["files_deleted"] == 20 and cache.get("3") is None


def test_replicas_sharing_a_folder_report_one_cache_id(tmp_path):
    first, second = JsonCache(tmp_path / "shared"), JsonCache(tmp_path / "shared")
    assert first.stats()["cache_id"] == second.stats()["cache_id"] != JsonCache(tmp_path / "other").stats()["cache_id"]
    assert not [p.name for p in (tmp_path / "shared").iterdir() if p.name != ".cache-id"], "nothing else left beside it"
