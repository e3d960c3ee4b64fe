"""A background loop that survives errors must not survive its own cancellation."""

from __future__ import annotations

import asyncio

from liveserver.tasks import reraise_if_cancelling


async def test_a_swallowed_cancellation_still_ends_the_loop() -> None:
    rounds = 0

    async def flaky_command() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed") from None  # what a client library may do

    async def loop() -> None:
        nonlocal rounds
        while True:
            reraise_if_cancelling()
            rounds += 1
            try:
                await flaky_command()
            except ConnectionError:
                reraise_if_cancelling()
                continue

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert task in done and task.cancelled()
    assert rounds == 1
