"""Pure parts of the drops: status rule, the too-soon rule, the group-commit batcher."""

from __future__ import annotations

import asyncio

import pytest

from liveserver.seckill.batcher import GrabBatcher, GrabRequest
from liveserver.seckill.drop import drop_status, too_soon


@pytest.mark.parametrize(
    ("ended", "now", "left", "status"),
    [
        (False, 50, 5, "countdown"),
        (False, 100, 5, "live"),
        (False, 150, 0, "sold_out"),
        (False, 200, 5, "ended"),
        (True, 150, 5, "ended"),
        (False, 50, 0, "countdown"),
    ],
)
def test_drop_status(ended: bool, now: int, left: int, status: str) -> None:
    assert drop_status(ended, 100, 200, left, now) == status


def test_too_soon() -> None:
    assert too_soon(1_010, 1_000, rtt_ms=100) is True  # 10 ms after the start, one way is 50 ms
    assert too_soon(1_030, 1_000, rtt_ms=100) is False  # within the clock sync's own error
    assert too_soon(1_060, 1_000, rtt_ms=100) is False
    assert too_soon(990, 1_000, rtt_ms=100) is False  # before the start: the script says not_started
    assert too_soon(1_001, 1_000, rtt_ms=None) is False  # no measurement, no rule
    assert too_soon(1_001, 1_000, rtt_ms=0) is False


async def test_batcher_groups_what_arrives_while_a_call_is_in_flight() -> None:
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def run(target: object, batch: list[GrabRequest]) -> list[tuple[str, str, int]]:
        calls.append([g.req_id for g in batch])
        if len(calls) == 1:
            await gate.wait()
        return [("ok", f"o-{g.req_id}", 1) for g in batch]

    b = GrabBatcher(run, max_batch=3)
    first = asyncio.create_task(b.submit("s", GrabRequest("u", "r0", "ip")))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(b.submit("s", GrabRequest("u", f"r{i}", "ip"))) for i in range(1, 6)]
    await asyncio.sleep(0)
    gate.set()
    answers = await asyncio.gather(first, *rest)
    assert [a[1] for a in answers] == [f"o-r{i}" for i in range(6)]
    assert calls == [["r0"], ["r1", "r2", "r3"], ["r4", "r5"]]  # one in flight; the rest grouped, capped at 3
    assert b.calls == 3 and b.grabs == 6


async def test_batcher_failure_reaches_every_waiter_and_recovers() -> None:
    fail = True

    async def run(target: object, batch: list[GrabRequest]) -> list[tuple[str, str, int]]:
        if fail:
            raise ConnectionError("redis down")
        return [("ok", "", 0) for _ in batch]

    b = GrabBatcher(run)
    results = await asyncio.gather(*(b.submit("s", GrabRequest("u", str(i), "ip")) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    fail = False
    assert (await b.submit("s", GrabRequest("u", "x", "ip")))[0] == "ok"
