"""Supervised background loops: a loop that dies is logged at once, reported down, restarted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from liveserver.supervisor import Loops


async def test_a_dying_loop_is_logged_reported_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    healed = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        healed.set()
        await asyncio.Event().wait()

    loops = Loops(backoff_s=0.2)
    loops.spawn("danmaku-tick", flaky)
    await asyncio.sleep(0.05)
    assert loops.down() == {"danmaku-tick": "RuntimeError: unable to perform operation on <TCPTransport closed=True>"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "danmaku-tick died" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None  # logged at once, with the traceback
    await asyncio.wait_for(healed.wait(), 2)
    assert loops.down() == {} and loops.failures() == {"danmaku-tick": 1}
    await loops.stop()
    assert all(t.done() for t in loops.tasks)


async def test_stop_cancels_loops_that_never_end() -> None:
    async def forever() -> None:
        while True:
            await asyncio.sleep(1)

    loops = Loops()
    loops.spawn("a", forever)
    loops.spawn("b", forever)
    await asyncio.sleep(0)
    await asyncio.wait_for(loops.stop(), 2)
