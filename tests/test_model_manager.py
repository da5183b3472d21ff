"""The ASR's model catalog and manager: what may load, one load per model, idle unloading, a cap."""

from __future__ import annotations

import asyncio
import threading

import pytest

from transcription.asr.manager import ModelManager
from transcription.asr.models import ModelCatalog, WhisperLoader
from transcription.errors import FailedPrecondition, InvalidArgument, ResourceExhausted


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> ModelCatalog:
    models_dir = tmp_path_factory.mktemp("models")
    local = models_dir / "local" / "my-finetune"
    local.mkdir(parents=True)
    (local / "model.bin").write_bytes(b"weights")
    (local / "vocabulary.txt").write_text("tok\n" * 51864)  # English-only Whisper's vocabulary size
    return ModelCatalog(models_dir, hub_allowlist=["Systran/faster-whisper-small"], offline=False)


def test_catalog_offers_bundled_local_and_allow_listed_models_only(catalog):
    entries = {e.name: e for e in catalog.entries()}
    assert {"base", "tiny.en", "my-finetune", "Systran/faster-whisper-small"} <= entries.keys()
    assert (entries["base"].source, entries["my-finetune"].source, entries["Systran/faster-whisper-small"].source) == (
        "bundled",
        "local",
        "hub",
    )
    assert entries["base"].multilingual and not entries["tiny.en"].multilingual
    assert not entries["my-finetune"].multilingual, "read from the model's own vocabulary"
    assert catalog.resolve("my-finetune") == entries["my-finetune"]
    for name, message in [
        ("/etc/passwd", "paths are not accepted"),
        ("../models/base", "paths are not accepted"),
        ("local/../base", "paths are not accepted"),
        ("a/b/c", "paths are not accepted"),
        ("large-v3", "ASR_MODEL_ALLOWLIST"),
        ("openai/whisper-large", "is not available"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            catalog.resolve(name)
    offline = ModelCatalog(catalog.models_dir, hub_allowlist=["Systran/faster-whisper-small"], offline=True)
    with pytest.raises(InvalidArgument, match="is not available"):
        offline.resolve("Systran/faster-whisper-small")


async def test_eight_simultaneous_first_requests_load_once(catalog):
    loader = WhisperLoader(catalog.models_dir, device="cpu", compute_type="int8", cpu_threads=1, hf_token=None)
    calls = []

    def counting_load(entry):
        calls.append(threading.get_ident())
        return loader(entry)

    manager = ModelManager(counting_load, loader.unload)
    entry = catalog.resolve("tiny.en")

    async def use():
        async with manager.acquire(entry) as model:
            await asyncio.sleep(0.05)
            return model

    models = await asyncio.gather(*(use() for _ in range(8)))
    assert len(calls) == 1 and all(m is models[0] for m in models)
    assert manager.is_loaded(entry) and manager.users(entry) == 0
    segments, _ = models[0].transcribe(__import__("numpy").zeros(16_000, dtype="float32"))
    list(segments)  # the loaded model really runs
    assert await manager.unload(entry) and not manager.is_loaded(entry)


async def test_a_failed_load_is_shared_by_its_waiters_and_leaves_nothing_behind():
    attempts = []

    def load(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise FailedPrecondition(f"cannot load {key}")
        return f"model {key}"

    manager = ModelManager(load)

    async def use():
        async with manager.acquire("m") as model:
            return model

    results = await asyncio.gather(*(use() for _ in range(3)), return_exceptions=True)
    assert len(attempts) == 1 and all(isinstance(r, FailedPrecondition) for r in results)
    assert await use() == "model m" and len(attempts) == 2, "the next request loads afresh"


async def test_idle_models_unload_after_the_ttl_but_never_while_in_use():
    clock, unloaded = Clock(), []
    manager = ModelManager(lambda key: f"model {key}", unloaded.append, idle_ttl=60, clock=clock)
    async with manager.acquire("a"):
        clock.now += 120
        assert await manager.unload_idle() == [], "in use"
    clock.now += 30
    assert await manager.unload_idle() == []
    clock.now += 31
    assert await manager.unload_idle() == ["a"] and unloaded == ["model a"]


async def test_the_cap_unloads_the_least_recently_used_idle_model():
    clock, unloaded = Clock(), []
    manager = ModelManager(lambda key: f"model {key}", unloaded.append, max_loaded=2, clock=clock)
    for key in ("a", "b"):
        await manager.load(key)
        clock.now += 1
    async with manager.acquire("a"):  # a is now the most recently used, and busy
        await manager.load("c")
        assert unloaded == ["model b"] and set(manager.loaded_keys) == {"a", "c"}
        async with manager.acquire("c"):
            with pytest.raises(ResourceExhausted, match="in use"):
                await manager.load("d")
            with pytest.raises(FailedPrecondition, match="in use"):
                await manager.unload("c")
    assert not await manager.unload("zzz")
