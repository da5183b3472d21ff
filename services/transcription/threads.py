"""Bridge blocking model code (run in a worker thread) to async streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

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
    """At most ``max_active`` jobs at once and ``max_waiting`` queued behind them.

    A job arriving when the queue is full is refused at once (the caller maps
    that to RESOURCE_EXHAUSTED) instead of piling up unbounded work.
    """

    def __init__(self, max_active: int, max_waiting: int):
        self._slots = asyncio.Semaphore(max_active)
        self.max_waiting = max_waiting
        self.waiting = 0
        self.active = 0

    def full(self) -> bool:
        return self._slots.locked() and self.waiting >= self.max_waiting

    async def __aenter__(self):
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.active -= 1
        self._slots.release()
