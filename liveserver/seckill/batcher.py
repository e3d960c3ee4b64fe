"""Group commit of grabs: many grabs of one drop per script call.

While one call for a drop is in flight, the grabs that arrive for it wait;
when it returns, they all go in the next call (up to ``max_batch``).  At low
load every grab goes at once (no added delay); under a spike a process makes
one round trip per batch, not per grab.  The script decides the batch's grabs
one by one in arrival order, exactly as if they had come one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["UNKNOWN_OUTCOME", "GrabBatcher", "GrabRequest", "unknown_outcome"]


@dataclass(frozen=True, slots=True)
class GrabRequest:
    user: str
    req_id: str
    ip: str
    refusal: str = ""  # "blocked": the node's anti-fraud rules refused it (the script records the answer)


#: Failures that say nothing about the batch's items: Redis did not answer (or not in time).
#: (``ReadOnlyError``: a replica answered during a failover; no item was applied.)
UNKNOWN_OUTCOME: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, RedisConnectionError,
                                                    RedisTimeoutError, ReadOnlyError)

#: Error replies that speak of Redis's state, not of one grab: splitting would only repeat them.
#: redis-py turns most into classes (out of memory, a cluster reconfiguring, a master down; a
#: replica during a failover, in UNKNOWN_OUTCOME); these two come as a plain ResponseError.
_STATE_ERRORS = (OutOfMemoryError, ClusterDownError, TryAgainError, MasterDownError, MovedError, AskError)
_STATE_PREFIXES = ("BUSY ", "NOREPLICAS ")


def unknown_outcome(exc: BaseException) -> bool:
    """Whether ``exc`` says nothing about the grabs of the batch it failed (fail it whole)."""
    return isinstance(exc, (*UNKNOWN_OUTCOME, *_STATE_ERRORS)) or (
        isinstance(exc, ResponseError) and str(exc).startswith(_STATE_PREFIXES)
    )


Answer = tuple[str, str, int]  # (answer, order_id or "", expires_at_ms or 0)
RunBatch = Callable[[Any, list[GrabRequest]], Awaitable[list[Answer]]]


class GrabBatcher:
    def __init__(self, run: RunBatch, *, max_batch: int = 256) -> None:
        self._run = run
        self._max = max_batch
        self._waiting: dict[Hashable, list[tuple[GrabRequest, asyncio.Future[Answer]]]] = {}
        self._flushing: set[Hashable] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.grabs = 0

    async def submit(self, target: Hashable, req: GrabRequest) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(target, []).append((req, fut))
        if target not in self._flushing:
            self._flushing.add(target)
            task = asyncio.get_running_loop().create_task(self._flush(target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _flush(self, target: Hashable) -> None:
        try:
            while True:
                waiting = self._waiting.get(target)
                if not waiting:
                    self._waiting.pop(target, None)
                    return
                batch, self._waiting[target] = waiting[: self._max], waiting[self._max :]
                try:
                    await self._commit(target, batch)
                except BaseException:  # cancelled (the node stops): no grab of this batch waits forever
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(ConnectionError("the server is stopping"))
                    raise
        finally:
            self._flushing.discard(target)

    async def _commit(self, target: Hashable, batch: list[tuple[GrabRequest, asyncio.Future[Answer]]]) -> None:
        """Run one batch and settle its futures.

        Redis unreachable or slow is an unknown outcome for the whole batch: every grab in
        it fails with that error and its client retries with the same ``req_id``.  Any
        other failure (a script error, an argument that cannot be encoded, a bug) may be
        one item's fault, so the batch is split in halves and each half run again, down to
        the one grab that fails alone: no user's answer depends on another user's input.
        Re-running is safe: the script answers an already decided ``(user, req_id)`` from
        where it was decided.
        """
        self.calls += 1
        self.grabs += len(batch)
        try:
            answers = await self._run(target, [r for r, _ in batch])
        except BaseException as exc:
            if isinstance(exc, Exception) and not unknown_outcome(exc) and len(batch) > 1:
                half = len(batch) // 2
                await self._commit(target, batch[:half])
                await self._commit(target, batch[half:])
                return
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), answer in zip(batch, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except asyncio.CancelledError:
                pass
