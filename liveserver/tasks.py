"""Background-loop hygiene.

A loop that survives Redis errors (``except RedisError: continue``) must not
survive its own cancellation: redis-py may turn a cancellation that arrives
mid-command into a connection error, which such a loop would swallow, and the
node's shutdown would wait for it forever.  Python 3.11's ``asyncio.wait_for``
(used inside redis-py) can also swallow a cancellation that coincides with
the awaited result, so each loop checks at the top of every round too.
"""

from __future__ import annotations

import asyncio

__all__ = ["reraise_if_cancelling"]


def reraise_if_cancelling() -> None:
    """Call at the top of each round of a background loop, and in its ``except`` blocks:
    re-raise if the task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
