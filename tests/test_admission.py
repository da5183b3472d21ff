"""Admission control shared by the ASR and diarizer services."""

from __future__ import annotations

import asyncio

from transcription.errors import ResourceExhausted
from transcription.threads import Admission


async def test_admission_refuses_a_burst_beyond_capacity_at_once():
    """Check and count happen together: the third of three simultaneous jobs is refused."""
    admission = Admission(max_active=1, max_waiting=1, service="test service")
    release = asyncio.Event()
    outcomes: list[str] = []

    async def job(name: str) -> None:
        try:
            async with admission.reserve():
                await asyncio.sleep(0)  # e.g. reading the audio
                async with admission.slot():
                    outcomes.append(f"{name} ran")
                    await release.wait()
        except ResourceExhausted as exc:
            outcomes.append(f"{name} refused: {exc.message}")

    tasks = [asyncio.create_task(job(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0.05)
    assert outcomes == ["c refused: the test service is at capacity (0 running, 2 waiting); try again shortly", "a ran"]
    release.set()
    await asyncio.gather(*tasks)
    assert outcomes[-1] == "b ran" and admission.admitted == 0 and admission.active == 0
