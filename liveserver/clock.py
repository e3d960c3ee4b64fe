"""The server clock: this node's wall clock, corrected to Redis's.

The Lua scripts decide every start and expiry with ``redis.call('TIME')``, so
Redis's clock is the one that counts.  The node measures its offset to it
(half the round trip taken off) and answers ``server_time_ms`` on that clock,
so that a client's countdown ends when the script opens the sale.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .redisio.client import RedisClient

__all__ = ["Clock", "offset_from_sample"]


def offset_from_sample(sent_s: float, received_s: float, redis_time: tuple[int, int]) -> float:
    """Redis's clock minus ours, in ms, from one TIME round trip (pure)."""
    redis_ms = redis_time[0] * 1000 + redis_time[1] / 1000
    midpoint_ms = (sent_s + received_s) / 2 * 1000
    return redis_ms - midpoint_ms


class Clock:
    def __init__(self) -> None:
        self.offset_ms = 0.0
        self.rtt_ms: float | None = None

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.offset_ms)

    async def sync(self, redis: RedisClient, samples: int = 3) -> None:
        """Measure the offset; keep the sample with the shortest round trip."""
        best: tuple[float, float] | None = None
        for _ in range(samples):
            sent = time.time()
            t = await redis.time()
            received = time.time()
            rtt = (received - sent) * 1000
            if best is None or rtt < best[0]:
                best = (rtt, offset_from_sample(sent, received, (int(t[0]), int(t[1]))))
        if best is not None:
            self.rtt_ms, self.offset_ms = best
