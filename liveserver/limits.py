"""Rate-limit arithmetic, pure: the caller passes ``now`` (seconds, any monotonic clock).

Limits that must hold across nodes (per user, per room) run in Redis
(``ratelimit_take.lua``); these guard one connection, which lives on one node.
"""

from __future__ import annotations

from collections import deque

__all__ = ["StrikeCounter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; return whether it was allowed."""
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class StrikeCounter:
    """Counts strikes (malformed frames and the like) in a sliding window."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def strike(self, now: float) -> bool:
        """Record a strike; return True when the limit is exceeded within the window."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times) > self.limit
