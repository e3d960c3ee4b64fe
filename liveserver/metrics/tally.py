"""Counts gathered in memory and written to Redis in one pipeline.

A room's events (entries, funnel events, orders) arrive by the thousand per
second at a peak; tallied per key first, they cost a few commands per room per
write instead of a few per event.  Every key written gets a TTL, so that a
count written after its room's keys were expired (a payment after the end)
does not stay for good.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from ..redisio.client import RedisClient

__all__ = ["METRIC_TTL_S", "Tally"]

log = logging.getLogger(__name__)

#: Metric keys live this long after their last write (an ended room's are expired sooner, with it).
METRIC_TTL_S = 30 * 24 * 3600


@dataclass(slots=True)
class Tally:
    """Counts gathered between two writes, merged per key."""

    members: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # HLL / set key -> members
    sets: set[str] = field(default_factory=set)  # the keys of ``members`` that are plain sets
    incr: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))  # (hash, field)
    values: dict[tuple[str, str], int] = field(default_factory=dict)  # (hash, field) -> last value
    top: dict[tuple[str, str], int] = field(default_factory=dict)  # (zset, member) -> highest score

    def __bool__(self) -> bool:
        return bool(self.members or self.incr or self.values or self.top)

    def add(self, key: str, member: str, *, plain_set: bool = False) -> None:
        self.members[key].add(member)
        if plain_set:
            self.sets.add(key)

    def count(self, key: str, name: str | int, n: int = 1) -> None:
        self.incr[(key, str(name))] += n

    def put(self, key: str, name: str | int, value: int) -> None:
        self.values[(key, str(name))] = value

    def highest(self, key: str, member: str, score: int) -> None:
        self.top[(key, member)] = max(score, self.top.get((key, member), score))

    def absorb(self, other: Tally) -> None:
        """Take back counts whose write failed (they go out with the next one)."""
        for key, members in other.members.items():
            self.members[key] |= members
        self.sets |= other.sets
        for k, n in other.incr.items():
            self.incr[k] += n
        for k, v in other.values.items():
            self.values.setdefault(k, v)
        for k, score in other.top.items():
            self.highest(*k, score)

    async def write(self, redis: RedisClient) -> int:
        """Write it all; returns how many commands Redis refused.  A refused command (a key of the
        wrong type, say) is logged and skipped: retrying cannot help it, and the others were
        applied.  A lost connection raises, and the caller keeps the tally for the next try."""
        pipe = redis.pipeline(transaction=False)
        for key, members in self.members.items():
            (pipe.sadd if key in self.sets else pipe.pfadd)(key, *members)
        for (key, name), n in self.incr.items():
            pipe.hincrby(key, name, n)
        for (key, name), value in self.values.items():
            pipe.hset(key, name, value)
        for (key, member), score in self.top.items():
            pipe.zadd(key, {member: score}, gt=True)
        for key in {*self.members, *(k for k, _ in self.incr), *(k for k, _ in self.values), *(k for k, _ in self.top)}:
            pipe.expire(key, METRIC_TTL_S)
        refused = [r for r in await pipe.execute(raise_on_error=False) if isinstance(r, Exception)]
        if refused:
            log.warning("%d metric writes refused by Redis, first: %s", len(refused), refused[0])
        return len(refused)
