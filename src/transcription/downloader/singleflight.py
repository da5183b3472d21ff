"""One run of a job per key, however many callers ask for it at once.

Ten browsers pasting the same link must cause one download: the first caller
starts the job, later ones join it, and every caller sees every event (a late
joiner gets the events so far, with stale progress skipped, then the live
ones), and the job's error if it fails. When the last caller leaves, the job is
cancelled, and a caller arriving after that starts a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from transcription.errors import Unavailable

E = TypeVar("E")


class _Flight(Generic[E]):
    def __init__(self) -> None:
        self.events: list[E] = []
        self.error: BaseException | None = None
        self.done = False
        self.callers = 0
        self.changed = asyncio.Event()  # replaced after each set, so a waiter needs no reset
        self.task: asyncio.Task | None = None

    def publish(self, event: E) -> None:
        self.events.append(event)
        self._wake()

    def finish(self, error: BaseException | None) -> None:
        self.error, self.done = error, True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SingleFlight(Generic[E]):
    def __init__(self, is_progress: Callable[[E], bool] = lambda event: False):
        self._flights: dict[str, _Flight[E]] = {}
        self._is_progress = is_progress  # progress events a late joiner can skip but for the newest

    async def join(self, key: str, start: Callable[[], AsyncIterator[E]]) -> AsyncIterator[E]:
        """The events of the job for ``key``, started with ``start()`` unless one is running."""
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            flight.task = asyncio.create_task(self._run(key, flight, start()))
        flight.callers += 1
        try:
            seen = 0
            while True:
                changed = flight.changed
                while seen < len(flight.events):
                    event = flight.events[seen]
                    seen += 1
                    stale = seen < len(flight.events) and self._is_progress(event) and self._is_progress(flight.events[seen])
                    if not stale:
                        yield event
                        changed = flight.changed  # events may have arrived while the caller was away
                if flight.done:
                    if flight.error is not None:
                        raise flight.error
                    return
                await changed.wait()
        finally:
            flight.callers -= 1
            if not flight.callers and not flight.done:
                # nobody wants it any more: stop it, and let the next caller start afresh
                if self._flights.get(key) is flight:
                    del self._flights[key]
                flight.task.cancel()

    async def _run(self, key: str, flight: _Flight[E], events: AsyncIterator[E]) -> None:
        error: BaseException | None = None
        try:
            async for event in events:
                flight.publish(event)
        except asyncio.CancelledError:
            error = Unavailable("the download was cancelled")
        except Exception as exc:  # noqa: BLE001 - handed to every caller
            error = exc
        finally:
            await events.aclose()
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.finish(error)
