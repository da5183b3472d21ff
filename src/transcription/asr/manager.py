"""Loaded models: one load per model, reference-counted handles, unloaded when idle.

After the pattern of speaches' ``BaseModelManager``:

* `acquire(key)` returns a handle; however many callers ask for a model that is
  not loaded yet, it is loaded once (they all wait on the same load), and a
  failed load leaves nothing behind, so the next caller tries again;
* a model in use (handles open) is never unloaded; an idle one is unloaded after
  ``idle_ttl`` seconds, or earlier when loading another would pass
  ``max_loaded`` (least recently used first);
* `load` and `unload` are the explicit controls behind the LoadModel and
  UnloadModel RPCs.

Loads run in a worker thread, so the event loop keeps streaming other jobs.
Keys are hashable descriptions of what to load (the ASR uses its catalog's
`ModelEntry`); the manager does not care what a model is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from transcription.errors import FailedPrecondition, ResourceExhausted

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    model: object
    load_seconds: float
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ModelManager:
    def __init__(
        self,
        load: Callable[[Hashable], object],
        unload: Callable[[object], None] = lambda model: None,
        *,
        idle_ttl: float = 600.0,
        max_loaded: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._load = load
        self._unload = unload
        self.idle_ttl = idle_ttl
        self.max_loaded = max_loaded
        self._clock = clock
        self._loaded: dict[Hashable, _Loaded] = {}
        self._loading: dict[Hashable, asyncio.Task] = {}
        self._sweeper: asyncio.Task | None = None

    # -- state -----------------------------------------------------------------

    def is_loaded(self, key: Hashable) -> bool:
        return key in self._loaded

    def users(self, key: Hashable) -> int:
        loaded = self._loaded.get(key)
        return loaded.users if loaded else 0

    @property
    def loaded_keys(self) -> list[Hashable]:
        return list(self._loaded)

    # -- use ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self, key: Hashable) -> AsyncIterator[object]:
        """The loaded model for ``key``, kept loaded until the block ends."""
        loaded = await self._get(key)
        loaded.users += 1
        try:
            yield loaded.model
        finally:
            loaded.users -= 1
            loaded.last_used = self._clock()

    async def load(self, key: Hashable) -> None:
        await self._get(key)

    async def unload(self, key: Hashable) -> bool:
        """Unload now; False when it was not loaded. A model in use is refused."""
        loaded = self._loaded.get(key)
        if loaded is None:
            return False
        if loaded.users:
            raise FailedPrecondition(f"model {key} is in use by {loaded.users} request(s); it unloads when they finish and it is idle")
        await self._drop(key)
        return True

    async def _get(self, key: Hashable) -> _Loaded:
        loaded = self._loaded.get(key)
        if loaded is not None:
            loaded.last_used = self._clock()
            return loaded
        task = self._loading.get(key)
        if task is None:
            # A task of its own: a caller that gives up does not cancel the load others wait for.
            task = asyncio.get_running_loop().create_task(self._load_into_place(key))
            self._loading[key] = task
            task.add_done_callback(functools.partial(self._forget_load, key))
        return await asyncio.shield(task)

    def _forget_load(self, key: Hashable, task: asyncio.Task) -> None:
        del self._loading[key]  # a failed load leaves nothing behind: the next caller loads afresh
        if not task.cancelled():
            task.exception()  # retrieved, so a load whose callers all gave up does not warn

    async def _load_into_place(self, key: Hashable) -> _Loaded:
        await self._make_room()
        began = time.monotonic()
        model = await asyncio.to_thread(self._load, key)
        loaded = _Loaded(model, time.monotonic() - began, last_used=self._clock())
        self._loaded[key] = loaded
        log.info("loaded model %s in %.1f s", key, loaded.load_seconds)
        return loaded

    async def _make_room(self) -> None:
        """Unload least recently used idle models until one more fits under ``max_loaded``."""
        while len(self._loaded) + len(self._loading) > self.max_loaded:
            idle = [(loaded.last_used, key) for key, loaded in self._loaded.items() if not loaded.users]
            if not idle:
                raise ResourceExhausted(
                    f"all {len(self._loaded)} loaded models are in use (ASR_MAX_LOADED_MODELS={self.max_loaded}); try again shortly"
                )
            await self._drop(min(idle)[1])

    async def _drop(self, key: Hashable) -> None:
        loaded = self._loaded.pop(key)
        await asyncio.to_thread(self._unload, loaded.model)
        log.info("unloaded model %s", key)

    # -- idle expiry ---------------------------------------------------------------

    async def unload_idle(self) -> list[Hashable]:
        """Unload every model idle for longer than ``idle_ttl``; returns their keys."""
        now = self._clock()
        expired = [key for key, loaded in self._loaded.items() if not loaded.users and now - loaded.last_used >= self.idle_ttl]
        for key in expired:
            await self._drop(key)
        return expired

    def start_sweeper(self, interval: float | None = None) -> None:
        """Check for idle models periodically (every ``idle_ttl / 4``, at most each minute)."""
        interval = interval or max(1.0, min(60.0, self.idle_ttl / 4))

        async def sweep() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.unload_idle()
                except Exception:  # noqa: BLE001 - keep sweeping; the log says why
                    log.exception("unloading idle models failed")

        if self.idle_ttl > 0 and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(sweep())
