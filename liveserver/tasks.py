"""Background-task hygiene: loops that stop when asked, and short tasks kept referenced.

A loop that survives Redis errors (``except RedisError: continue``) must not
survive its own cancellation: redis-py may turn a cancellation that arrives
mid-command into a connection error, which such a loop would swallow, and the
node's shutdown would wait for it forever.  Python 3.11's ``asyncio.wait_for``
(used inside redis-py) can also swallow a cancellation that coincides with
the awaited result, so each loop checks at the top of every round too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskSet", "reraise_if_cancelling"]

log = logging.getLogger(__name__)


def reraise_if_cancelling() -> None:
    """Call at the top of each round of a background loop, and in its ``except`` blocks:
    re-raise if the task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TaskSet:
    """Short-lived tasks (a reload, a late reject) kept referenced until they end, so that
    the loop does not collect them half-way, and cancelled and awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel every task and wait for it; one that had died of a bug is logged, not raised."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that died of a bug must not stop the shutdown
                log.exception("background task %s had failed", task.get_name())
