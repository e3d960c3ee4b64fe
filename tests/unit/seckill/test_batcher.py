"""The grab batcher: one call per batch, grouped while a call is in flight, and a bad item that
never fails the others."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from liveserver.seckill.batcher import Answer, GrabBatcher, GrabRequest


def _req(i: int, req_id: str | None = None) -> GrabRequest:
    return GrabRequest(user=f"u{i}", req_id=req_id or f"r{i}", ip="127.0.0.1")


async def _submit_all(batcher: GrabBatcher, reqs: list[GrabRequest]) -> list[Answer | BaseException]:
    return await asyncio.gather(*(batcher.submit("sale", r) for r in reqs), return_exceptions=True)


@pytest.mark.parametrize("error", [DataError("cannot encode"), ResponseError("script error"), UnicodeEncodeError(
    "utf-8", "\ud800", 0, 1, "surrogates not allowed"), TypeError("a bug")])
async def test_one_poisoned_grab_fails_alone(error: Exception) -> None:
    calls: list[int] = []

    async def run(target: object, batch: list[GrabRequest]) -> list[Answer]:
        calls.append(len(batch))
        await asyncio.sleep(0)
        if any(r.req_id == "poison" for r in batch):
            raise error
        return [("ok", f"o-{r.user}", 1) for r in batch]

    batcher = GrabBatcher(run, max_batch=256)
    reqs = [_req(i, "poison" if i == 37 else None) for i in range(120)]
    results = await _submit_all(batcher, reqs)
    for i, result in enumerate(results):
        if i == 37:
            assert result is error
        else:
            assert result == ("ok", f"o-u{i}", 1)
    assert len(calls) <= 2 + 2 * 8  # bisection: about 2 log2(n) calls, not one per grab


async def test_redis_down_is_an_unknown_outcome_for_the_whole_batch() -> None:
    calls = 0

    async def run(target: object, batch: list[GrabRequest]) -> list[Answer]:
        nonlocal calls
        calls += 1
        raise RedisConnectionError("connection refused")

    batcher = GrabBatcher(run)
    results = await _submit_all(batcher, [_req(i) for i in range(50)])
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert calls <= 2  # no split: every grab in it would fail the same way (the client retries)


async def test_redis_state_errors_fail_the_batch_whole() -> None:
    calls = 0

    async def run(target: object, batch: list[GrabRequest]) -> list[Answer]:
        nonlocal calls
        calls += 1
        raise ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")

    results = await _submit_all(GrabBatcher(run), [_req(i) for i in range(64)])
    assert all(isinstance(r, ResponseError) for r in results) and calls <= 2


async def test_a_stopping_batcher_settles_every_grab() -> None:
    started = asyncio.Event()

    async def run(target: object, batch: list[GrabRequest]) -> list[Answer]:
        started.set()
        await asyncio.sleep(10)
        return []

    batcher = GrabBatcher(run)
    pending = asyncio.gather(*(batcher.submit("sale", _req(i)) for i in range(5)), return_exceptions=True)
    await started.wait()
    await batcher.close()
    results = await asyncio.wait_for(pending, 2)
    assert all(isinstance(r, ConnectionError) for r in results)


def test_redis_state_errors_are_known_by_their_classes() -> None:
    from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError

    from liveserver.seckill.batcher import unknown_outcome

    # redis-py strips the reply's prefix for these: the class is what tells
    for exc in (OutOfMemoryError("command not allowed"), ClusterDownError("The cluster is down"),
                TryAgainError("Multiple keys request during rehashing"), ReadOnlyError("read only replica"),
                ResponseError("NOREPLICAS Not enough good replicas to write."), RedisConnectionError("gone")):
        assert unknown_outcome(exc), exc
    assert not unknown_outcome(ResponseError("user_script:12: attempt to compare nil with number"))
    assert not unknown_outcome(DataError("Invalid input of type: 'dict'"))


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
