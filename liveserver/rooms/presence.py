"""Presence: who is connected to a room, across every node.

Each node keeps, per room, a Redis set of the users it holds and a heartbeat
in the room's ``nodes`` zset.  ``online`` (the room's distinct users) is the
length of a hash ``user -> number of live nodes holding them``, kept exact by
the presence scripts.  A node that stops beating for ``presence_ttl_s`` is
reaped by whichever node looks next: its users leave the count.  A node that
was only paused revives its members with its next beat.

On one node, the join and leave of one (room, user) are serialised and
always converge to what the hub holds: :meth:`Presence.sync` looks at the
hub after taking the pair's lock, so a leave that overtakes a rejoin cannot
leave a connected user uncounted.  A change that failed (Redis down) is
retried by the heartbeat loop until it lands.

Every node pushes ``presence {online}`` to its own viewers at most once per
``presence_push_s``, and only when the number changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import RedisCluster

from ..redisio.client import REDIS_DOWN
from ..redisio.keyspace import NODE_SET_TTL_MS
from ..redisio.store import Store
from ..tasks import reraise_if_cancelling

__all__ = ["Presence"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class Presence:
    def __init__(
        self,
        store: Store,
        node_id: str,
        is_present: Callable[[str, str], bool],
        *,
        ttl_s: float,
        beat_s: float,
        push_s: float,
    ) -> None:
        self._redis, self._scripts, self._keys = store
        self.node_id = node_id
        self._is_present = is_present
        self._ttl_ms = int(ttl_s * 1000)
        self._beat_s = beat_s
        self._push_s = push_s
        self._pipelined = not isinstance(store.redis, RedisCluster)  # a cluster pipeline cannot run scripts
        self._joined: set[Pair] = set()  # pairs this node has counted in Redis
        self._dirty: set[Pair] = set()  # pairs whose last change failed: retried by the beat
        self._locks: dict[Pair, tuple[asyncio.Lock, int]] = {}
        self._last_pushed: dict[str, tuple[int, float]] = {}
        self.online_cache: dict[str, int] = {}

    def _node_keys(self, room: str, node: str | None = None) -> list[str]:
        k = self._keys.room(room)
        return [k.nodes, k.node_users(node or self.node_id), k.online]

    # -- joins and leaves --------------------------------------------------------------

    async def sync(self, room: str, user: str) -> int | None:
        """Make Redis count ``user`` in ``room`` for this node exactly when the hub holds them.

        Returns the room's online count if a change was made, else None.
        Raises on Redis trouble (the pair is retried by the heartbeat).
        """
        pair = (room, user)
        lock, users = self._locks.get(pair) or (asyncio.Lock(), 0)
        self._locks[pair] = (lock, users + 1)
        try:
            async with lock:
                return await self._apply(pair)
        finally:
            lock, users = self._locks[pair]
            if users <= 1:
                del self._locks[pair]
            else:
                self._locks[pair] = (lock, users - 1)

    async def _apply(self, pair: Pair) -> int | None:
        room, user = pair
        want = self._is_present(room, user)
        have = pair in self._joined
        if want == have:
            self._dirty.discard(pair)
            return None
        try:
            if want:
                online = await self._scripts.presence_join(
                    keys=self._node_keys(room), args=[self.node_id, self._ttl_ms, user]
                )
                self._joined.add(pair)
            else:
                online = await self._scripts.presence_leave(keys=self._node_keys(room), args=[self.node_id, user])
                self._joined.discard(pair)
        except REDIS_DOWN:
            self._dirty.add(pair)
            raise
        self._dirty.discard(pair)
        self.online_cache[room] = int(online)
        return int(online)

    async def retry_dirty(self) -> None:
        for pair in list(self._dirty):
            try:
                await self.sync(*pair)
            except REDIS_DOWN:
                return

    # -- reading -----------------------------------------------------------------------

    async def online(self, room: str) -> int:
        """The room's online count, reaping dead nodes first."""
        k = self._keys.room(room)
        res = await self._scripts.presence_read(keys=[k.nodes, k.online])
        online, dead = int(res[0]), res[1:]
        if dead:
            online = await self._reap(room, dead)
        return online

    async def _reap(self, room: str, dead: list[str]) -> int:
        online = 0
        for node in dead:
            online = int(
                await self._scripts.presence_reap(keys=self._node_keys(room, node), args=[node, NODE_SET_TTL_MS])
            )
            log.info("reaped dead node %s from room %s (online now %d)", node, room, online)
        return online

    # -- the heartbeat -------------------------------------------------------------------

    async def beat(self, rooms: list[str]) -> dict[str, int]:
        """Heartbeat every room this node holds (one round trip); reap dead nodes seen."""
        if not rooms:
            return {}
        args = [self.node_id, self._ttl_ms]
        if self._pipelined:
            # ``async with``: a pipeline of scripts checks them (SCRIPT EXISTS) before execute()'s
            # own cleanup begins, and would keep its pooled connection when Redis is down then
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    await self._scripts.presence_beat(keys=self._node_keys(room), args=args, client=pipe)
                results = await pipe.execute()
        else:
            results = await asyncio.gather(
                *(self._scripts.presence_beat(keys=self._node_keys(room), args=args) for room in rooms)
            )
        out: dict[str, int] = {}
        for room, res in zip(rooms, results, strict=True):
            online, dead = int(res[0]), res[1:]
            if dead:
                online = await self._reap(room, dead)
            out[room] = online
        self.online_cache.update(out)
        return out

    async def leave_all(self) -> None:
        """Take every pair this node counted out of presence (on shutdown)."""
        for room, user in list(self._joined):
            try:
                await self._scripts.presence_leave(keys=self._node_keys(room), args=[self.node_id, user])
            except REDIS_DOWN:
                return  # the node's heartbeat stops: other nodes reap it within the TTL
            self._joined.discard((room, user))

    def should_push(self, room: str, online: int, now: float) -> bool:
        """Whether to push ``online`` for ``room`` now: it changed since the last push,
        and the last push is at least ``push_s`` old (and remember the push)."""
        last = self._last_pushed.get(room)
        if last is not None and (last[0] == online or now - last[1] < self._push_s - 1e-3):
            return False
        self._last_pushed[room] = (online, now)
        return True

    def forget(self, room: str) -> None:
        self._last_pushed.pop(room, None)
        self.online_cache.pop(room, None)

    async def run(self, rooms: Callable[[], list[str]], push: Callable[[str, int], None]) -> None:
        """The node's presence loop: beat every ``beat_s``; push a changed count at most
        every ``push_s`` per room; retry failed joins and leaves."""
        loop = asyncio.get_running_loop()
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(self._beat_s)
            try:
                if self._dirty:
                    await self.retry_dirty()
                counts = await self.beat(rooms())
            except REDIS_DOWN as exc:
                reraise_if_cancelling()
                log.warning("presence heartbeat failed: %s", exc)
                continue
            except Exception:  # a bug must not stop the heartbeat: other nodes would reap this one
                reraise_if_cancelling()
                log.exception("presence heartbeat failed")
                continue
            now = loop.time()
            for room, online in counts.items():
                if self.should_push(room, online, now):
                    push(room, online)
