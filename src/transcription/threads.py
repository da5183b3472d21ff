"""Bridge blocking model code (run in a worker thread) to async streams."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from transcription.errors import ResourceExhausted

T = TypeVar("T")

_DONE = object()


class Stopped(Exception):
    """Raised inside the worker when the consumer went away; ends the work early."""


async def stream_from_thread(work: Callable[[Callable[[T], None]], None]) -> AsyncIterator[T]:
    """Run ``work(emit)`` in a thread and yield what it emits, as it emits it.

    Exceptions raised by ``work`` are re-raised here. If the consumer stops
    iterating (client cancelled), the next ``emit`` raises `Stopped` inside the
    worker, and this generator waits for the thread to end before returning,
    so a concurrency slot held around it is not released while the model still
    runs.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stopped = threading.Event()

    def emit(item: T) -> None:
        if stopped.is_set():
            raise Stopped()
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            work(emit)
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    thread = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
        await asyncio.shield(thread)


class Admission:
    """At most ``max_active`` jobs at once and ``max_waiting`` more admitted behind them.

    ``reserve()`` admits a job or refuses it at once with RESOURCE_EXHAUSTED,
    before the job reads its audio: the check and the count happen with no
    await in between, so a burst of requests cannot overshoot the queue, and a
    refused request never holds its audio in memory. The job then waits for
    one of the active slots with ``slot()``.
    """

    def __init__(self, max_active: int, max_waiting: int, service: str):
        self._slots = asyncio.Semaphore(max_active)
        self.capacity = max_active + max_waiting
        self.service = service
        self.admitted = 0  # reserved, waiting or active
        self.active = 0

    @property
    def waiting(self) -> int:
        return self.admitted - self.active

    @contextlib.asynccontextmanager
    async def reserve(self) -> AsyncIterator[None]:
        """Be admitted for the block, or get RESOURCE_EXHAUSTED now."""
        if self.admitted >= self.capacity:
            raise ResourceExhausted(f"the {self.service} is at capacity ({self.active} running, {self.waiting} waiting); try again shortly")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Inside ``reserve()``: wait for an active slot and hold it for the block."""
        async with self._slots:
            self.active += 1
            try:
                yield
            finally:
                self.active -= 1
