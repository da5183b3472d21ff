"""The gateway calls a service again only while it cannot be reached and nothing has arrived yet."""

from __future__ import annotations

import pytest

from transcription import errors
from transcription.gateway.jobs import retry_unreachable


def stream_failing(times: int, error: type[errors.ServiceError], after: int = 0):
    calls = []

    async def stream():
        calls.append(1)
        for number in range(after):
            yield number
        if len(calls) <= times:
            raise error("the downloader service is unavailable")
        yield "done"

    return stream, calls


async def collect(call) -> list:
    return [event async for event in retry_unreachable(call)]


async def test_an_unreachable_service_is_called_again():
    call, calls = stream_failing(2, errors.ServiceUnreachable)
    assert await collect(call) == ["done"] and len(calls) == 3


async def test_it_gives_up_after_three_calls():
    call, calls = stream_failing(5, errors.ServiceUnreachable)
    with pytest.raises(errors.ServiceUnreachable):
        await collect(call)
    assert len(calls) == 3


async def test_no_second_call_once_something_arrived_or_for_other_failures():
    call, calls = stream_failing(1, errors.ServiceUnreachable, after=1)
    with pytest.raises(errors.ServiceUnreachable):
        await collect(call)
    assert len(calls) == 1
    call, calls = stream_failing(1, errors.Unavailable)  # the origin down, not the service: its answer stands
    with pytest.raises(errors.Unavailable):
        await collect(call)
    assert len(calls) == 1
