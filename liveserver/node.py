"""The node: one server process's services, wired together.

Built and torn down by the app's ``cleanup_ctx`` (see app.py); handlers reach
it as ``request.app[NODE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from .broker import Broker
from .clock import Clock
from .gateway import Command
from .hub import Hub, QueueLimits
from .metrics.prom import Metrics
from .redisio import Keyspace, RedisClient, Scripts, connect, connect_pubsub
from .rooms.presence import Presence
from .rooms.service import RoomService
from .settings import Settings
from .wire import CloseCode

__all__ = ["Node"]

log = logging.getLogger(__name__)


class Node:
    def __init__(self, settings: Settings, redis: RedisClient, subscriber: Any) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.node_id = secrets.token_hex(6)
        self.keys = Keyspace(settings.key_prefix)
        self.redis = redis
        self.scripts = Scripts(redis)
        self.clock = Clock()
        self.hub = Hub(
            QueueLimits(
                send_queue_frames=settings.send_queue_frames,
                droppable_queue_frames=settings.droppable_queue_frames,
                slow_consumer_timeout_s=settings.slow_consumer_timeout_s,
                close_grace_s=settings.close_grace_s,
            )
        )
        self.hub.on_internal = self._on_internal
        self.broker = Broker(redis, subscriber, self.keys, self._deliver)
        self.presence = Presence(
            redis,
            self.scripts,
            self.keys,
            self.node_id,
            ttl_s=settings.presence_ttl_s,
            beat_s=settings.presence_beat_s,
            push_s=settings.presence_push_s,
        )
        self.rooms = RoomService(redis, self.scripts, self.keys, self.broker.publish, settings.ended_room_ttl_s)
        self.metrics = Metrics(self)
        self.draining = False
        self.sessions = 0  # WebSocket sessions open on this process, welcomed or not
        #: client command handlers by message class (danmaku, grabs and claims register here)
        self.commands: dict[type, Command] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def connect(cls, settings: Settings) -> Node:
        assert settings.redis_url is not None
        redis = connect(settings.redis_url, cluster=settings.redis_cluster)
        subscriber_url = settings.redis_url
        return cls(settings, redis, connect_pubsub(subscriber_url))

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.clock.sync(self.redis)
        await self.broker.start()
        self._spawn(self.presence.run(self.hub.rooms, self._push_presence), "presence")
        self._spawn(self._clock_loop(), "clock")
        log.info("node %s up (clock offset to Redis %.1f ms)", self.node_id, self.clock.offset_ms)

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            with contextlib.suppress(Exception):
                await self.clock.sync(self.redis)

    async def drain(self) -> None:
        """Close every WebSocket with 1012 (flushing what is queued) and wait for them."""
        self.draining = True
        conns = list(self.hub.connections())
        for conn in conns:
            conn.close(CloseCode.SERVICE_RESTART, "server restart")
        if conns:
            await asyncio.gather(*(c.wait_closed(self.settings.drain_timeout_s) for c in conns))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        memberships = [(room, user) for room in self.hub.rooms() for user in self.hub.users(room)]
        await self.presence.leave_all(memberships)
        await self.broker.close()
        await self.redis.aclose()

    # -- delivery --------------------------------------------------------------

    def _deliver(self, room: str, msg: dict[str, Any], payload: bytes) -> None:
        self.hub.deliver(room, msg, payload)

    def _push_presence(self, room: str, online: int) -> None:
        self.hub.deliver(room, {"type": "presence", "online": online})

    def _on_internal(self, room: str, msg: dict[str, Any]) -> None:
        if msg.get("type") == "_kick":
            user = msg.get("user")
            for conn in self.hub.connections(room):
                if conn.user == user:
                    conn.close(CloseCode.FORBIDDEN, str(msg.get("reason", "banned")))
