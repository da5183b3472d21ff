"""Bridge blocking model code (run in a worker thread) to async streams."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
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
    refused request never holds its audio in memory. The job then waits its turn
    for an active slot, first come first served: ``queue_for_slot()`` yields its
    place in line whenever that changes (for queue-position messages), and
    ``holding()`` keeps the slot for the work; ``slot()`` does both quietly.
    """

    def __init__(self, max_active: int, max_waiting: int, service: str):
        self.max_active = max_active
        self.capacity = max_active + max_waiting
        self.service = service
        self.admitted = 0  # reserved, waiting or active
        self.active = 0
        self._line: collections.deque[asyncio.Future] = collections.deque()
        self._moved = asyncio.Event()  # set (and replaced) whenever the line moves
        self._recent_seconds: float | None = None  # smoothed duration of recent jobs

    @property
    def waiting(self) -> int:
        return self.admitted - self.active

    @contextlib.asynccontextmanager
    async def reserve(self) -> AsyncIterator[None]:
        """Be admitted for the block, or get RESOURCE_EXHAUSTED now."""
        if self.admitted >= self.capacity:
            wait = self.estimated_wait(self.waiting + 1)
            hint = f"; retry in about {wait:.0f} s" if wait else "; try again shortly"
            raise ResourceExhausted(f"the {self.service} is at capacity ({self.active} running, {self.waiting} waiting){hint}")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    def estimated_wait(self, position: int) -> float:
        """Seconds until the job at ``position`` starts, from recent durations; 0 when unknown."""
        if self._recent_seconds is None:
            return 0.0
        return math.ceil(position / self.max_active) * self._recent_seconds

    async def queue_for_slot(self) -> AsyncIterator[int]:
        """Wait in line for a slot, yielding this job's place (1 = next) each time it changes.

        When the loop over it ends, the caller holds a slot: enter ``holding()``
        at once (no await in between) so that it is released.
        """
        if self.active < self.max_active and not self._line:
            self.active += 1
            return
        ticket = asyncio.get_running_loop().create_future()
        self._line.append(ticket)
        try:
            shown = None
            while not ticket.done():
                place = self._line.index(ticket) + 1
                if place != shown:
                    shown = place
                    yield place
                moved = asyncio.ensure_future(self._moved.wait())
                try:
                    await asyncio.wait({ticket, moved}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    moved.cancel()
        except BaseException:
            if ticket in self._line:
                self._line.remove(ticket)
                self._signal_moved()
            elif ticket.done() and not ticket.cancelled():
                self._release()  # the slot was handed over as the caller gave up: pass it on
            raise

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Hold the slot ``queue_for_slot()`` gave, for the block."""
        began = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - began
            self._recent_seconds = elapsed if self._recent_seconds is None else 0.7 * self._recent_seconds + 0.3 * elapsed
            self._release()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Inside ``reserve()``: wait for an active slot and hold it for the block."""
        async for _ in self.queue_for_slot():
            pass
        async with self.holding():
            yield

    def _release(self) -> None:
        while self._line:
            ticket = self._line.popleft()
            if not ticket.done():
                ticket.set_result(None)  # the slot passes straight to the next in line
                self._signal_moved()
                return
        self.active -= 1
        self._signal_moved()

    def _signal_moved(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()
