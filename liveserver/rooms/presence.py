"""Presence: who is connected to a room, across every node.

Each node keeps, per room, a Redis set of the users it holds and a heartbeat
in the room's ``nodes`` zset.  ``online`` (the room's distinct users) is the
length of a hash ``user -> number of live nodes holding them``, kept exact by
the presence scripts.  A node that stops beating for ``presence_ttl_s`` is
reaped by whichever node looks next: its users leave the count.  A node that
was only paused revives its members with its next beat.

Every node pushes ``presence {online}`` to its own viewers at most once per
``presence_push_s``, and only when the number changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from ..redisio import Keyspace, Scripts
from ..redisio.keyspace import NODE_SET_TTL_MS

__all__ = ["Presence"]

log = logging.getLogger(__name__)


class Presence:
    def __init__(
        self,
        redis: Any,
        scripts: Scripts,
        keyspace: Keyspace,
        node_id: str,
        *,
        ttl_s: float,
        beat_s: float,
        push_s: float,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._keys = keyspace
        self.node_id = node_id
        self._ttl_ms = int(ttl_s * 1000)
        self._beat_s = beat_s
        self._push_s = push_s
        self._last_pushed: dict[str, tuple[int, float]] = {}
        self.online_cache: dict[str, int] = {}

    def _node_keys(self, room: str, node: str | None = None) -> list[str]:
        k = self._keys.room(room)
        return [k.nodes, k.node_users(node or self.node_id), k.online]

    async def join(self, room: str, user: str) -> int:
        online = await self._scripts.presence_join(
            keys=self._node_keys(room), args=[self.node_id, self._ttl_ms, user, NODE_SET_TTL_MS]
        )
        self.online_cache[room] = int(online)
        return int(online)

    async def leave(self, room: str, user: str) -> int:
        online = await self._scripts.presence_leave(keys=self._node_keys(room), args=[self.node_id, user])
        self.online_cache[room] = int(online)
        return int(online)

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
            online = int(await self._scripts.presence_reap(keys=self._node_keys(room, node), args=[node]))
            log.info("reaped dead node %s from room %s (online now %d)", node, room, online)
        return online

    async def beat(self, rooms: list[str]) -> dict[str, int]:
        """Heartbeat every room this node holds (one round trip); reap dead nodes seen."""
        if not rooms:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for room in rooms:
            await self._scripts.presence_beat(
                keys=self._node_keys(room), args=[self.node_id, self._ttl_ms, NODE_SET_TTL_MS], client=pipe
            )
        results = await pipe.execute()
        out: dict[str, int] = {}
        for room, res in zip(rooms, results, strict=True):
            online, dead = int(res[0]), res[1:]
            if dead:
                online = await self._reap(room, dead)
            out[room] = online
        self.online_cache.update(out)
        return out

    async def leave_all(self, memberships: list[tuple[str, str]]) -> None:
        """Take every (room, user) this node holds out of presence (on shutdown)."""
        for room, user in memberships:
            with contextlib.suppress(RedisError, OSError):
                await self.leave(room, user)

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
        every ``push_s`` per room."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._beat_s)
            try:
                counts = await self.beat(rooms())
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed: %s", exc)
                continue
            now = loop.time()
            for room, online in counts.items():
                if self.should_push(room, online, now):
                    push(room, online)
