"""Likes: counted on the node, added to Redis and broadcast at most once a second.

Each node sums the likes its viewers send, adds them to the room's total in
one pipelined round trip per period, reads the totals of the rooms it holds,
and pushes ``likes {total}`` to its own viewers when a total changed.  The
same round trip adds the node's thinned-danmaku counts to each room's.
"""

from __future__ import annotations

import asyncio
import logging

from ..hub import Hub
from ..redisio import Keyspace
from ..redisio.client import REDIS_DOWN, RedisClient
from ..tasks import reraise_if_cancelling
from .fanout import DanmakuFanout

__all__ = ["Likes"]

log = logging.getLogger(__name__)


class Likes:
    def __init__(self, redis: RedisClient, keyspace: Keyspace, hub: Hub, fanout: DanmakuFanout, push_s: float) -> None:
        self._redis = redis
        self._keys = keyspace
        self._hub = hub
        self._fanout = fanout
        self._push_s = push_s
        self._pending: dict[str, int] = {}
        self._pushed: dict[str, int] = {}

    def add(self, room: str, count: int) -> None:
        self._pending[room] = self._pending.get(room, 0) + count

    def seen(self, room: str, total: int) -> None:
        """A viewer joined knowing ``total`` (the welcome carries it)."""
        self._pushed.setdefault(room, total)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        thinned = self._fanout.take_thinned()
        rooms = self._hub.rooms()
        if not (pending or thinned or rooms):
            return
        pipe = self._redis.pipeline(transaction=False)
        for room, n in pending.items():
            pipe.incrby(self._keys.room(room).likes, n)
        for room, n in thinned.items():
            pipe.incrby(self._keys.room(room).thinned, n)
        for room in rooms:
            pipe.get(self._keys.room(room).likes)
        try:
            results = await pipe.execute()
        except REDIS_DOWN:
            for room, n in pending.items():  # keep them for the next round
                self.add(room, n)
            raise
        for room, raw in zip(rooms, results[len(pending) + len(thinned) :], strict=True):
            total = int(raw or 0)
            if self._pushed.get(room) != total:
                self._pushed[room] = total
                self._hub.deliver(room, {"type": "likes", "total": total})
        for room in list(self._pushed):
            if not self._hub.has_room(room):
                del self._pushed[room]

    async def run(self) -> None:
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(self._push_s)
            try:
                await self.flush()
            except REDIS_DOWN as exc:
                reraise_if_cancelling()
                log.warning("likes flush failed: %s", exc)
