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

from redis.exceptions import RedisError

from .broker import Broker
from .clock import Clock
from .danmaku import api as danmaku_api
from .danmaku.fanout import DanmakuFanout
from .danmaku.likes import Likes
from .danmaku.service import DanmakuService
from .gateway import Command, Session
from .hub import Hub, QueueLimits
from .metrics import api as metrics_api
from .metrics.alerts import AlertRules
from .metrics.prom import Metrics
from .metrics.room import RoomMetrics
from .redisio import Keyspace, RedisClient, Scripts, connect, connect_pubsub
from .rooms.presence import Presence
from .rooms.service import RoomService
from .seckill import api as seckill_api
from .seckill.packets import RedPacketService
from .seckill.scheduler import DropScheduler
from .seckill.service import SeckillService
from .serving import GuardStats
from .settings import Settings
from .supervisor import Loops
from .tasks import reraise_if_cancelling
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
        self.metrics = Metrics(self)  # read at scrape time; it only keeps the node
        self.scripts = Scripts(redis, self.metrics)
        self.clock = Clock()
        self.hub = Hub(
            QueueLimits(
                send_queue_frames=settings.send_queue_frames,
                droppable_queue_frames=settings.droppable_queue_frames,
                slow_consumer_timeout_s=settings.slow_consumer_timeout_s,
                close_grace_s=settings.close_grace_s,
            )
        )
        self.broker = Broker(
            redis, subscriber, self.keys, self._deliver, is_wanted=self.hub.has_room, on_subscribed=self._on_subscribed
        )
        self.presence = Presence(
            redis,
            self.scripts,
            self.keys,
            self.node_id,
            self.hub.has_user,
            ttl_s=settings.presence_ttl_s,
            beat_s=settings.presence_beat_s,
            push_s=settings.presence_push_s,
        )
        self.rooms = RoomService(redis, self.scripts, self.keys, self.broker.publish, settings.ended_room_ttl_s)
        self.danmaku = DanmakuService(redis, self.scripts, self.keys, settings, self.rooms)
        self.fanout = DanmakuFanout(
            self.hub,
            self.danmaku.history_range,
            tick_s=settings.danmaku_tick_s,
            items_per_tick=settings.danmaku_items_per_tick,
            lag_items_per_tick=settings.danmaku_lag_items_per_tick,
            lag_frames=settings.danmaku_lag_frames,
            max_waiting=settings.danmaku_room_burst,
        )
        self.likes = Likes(redis, self.keys, self.hub, self.fanout, settings.likes_push_s)
        self.seckill = SeckillService(
            redis, self.scripts, self.keys, settings, self.rooms, self.clock, self.broker.is_subscribed
        )
        self.rooms.on_end.append(self.seckill.end_room)
        self.packets = RedPacketService(
            redis, self.scripts, self.keys, settings, self.rooms, self.clock, self.seckill.is_blocked
        )
        self.rooms.on_end.append(self.packets.end_room)
        self.scheduler = DropScheduler(
            redis, self.scripts, self.keys, self.clock, self.seckill, self.packets, self.node_id,
            schedule_s=settings.schedule_interval_s, sweep_s=settings.sweep_interval_s,
        )
        self.room_metrics = RoomMetrics(
            redis, self.keys, self.hub, self.clock, self.presence.online_cache, self.node_id,
            rules=AlertRules.from_settings(settings), drops_of=self.seckill.history, packets_of=self.packets.claimed,
        )
        self.draining = False
        self.sessions: set[Session] = set()  # WebSocket sessions on this process, welcomed or not
        #: client command handlers by message class (danmaku, grabs and claims register here)
        self.commands: dict[type, Command] = {
            **danmaku_api.commands, **seckill_api.commands, **metrics_api.commands
        }
        #: broker messages the node handles itself instead of fanning them out as they are
        self._handlers: dict[str, Any] = {
            "_dm": self.fanout.on_item,
            "danmaku_deleted": self.fanout.on_delete,
            "_words": self._on_words,
            "_kick": self._on_kick,
            "_blocklist": self._on_blocklist,
            "flash_sale": self._on_drop,
            "coupon": self._on_drop,
        }
        self.loops = Loops()
        self.guard = GuardStats()  # the HTTP connection guard's counters (serving.py), for /metrics
        self._tasks = self.loops.tasks  # the supervised loops' tasks (the tests' stuck-shutdown dump reads them)
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def connect(cls, settings: Settings) -> Node:
        assert settings.redis_url is not None
        redis = connect(settings.redis_url, cluster=settings.redis_cluster)
        subscriber_url = settings.redis_url
        return cls(settings, redis, connect_pubsub(subscriber_url))

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.clock.sync(self.redis)
        await self.danmaku.load_global_words()
        await self.seckill.load_blocklist()
        await self.broker.start()
        loops = self.loops
        loops.spawn("presence", lambda: self.presence.run(self.hub.rooms, self._push_presence))
        loops.spawn("danmaku-tick", self.fanout.run)
        loops.spawn("likes", self.likes.run)
        loops.spawn("drop-schedule", self.scheduler.run_schedule)
        loops.spawn("deadline-sweeper", self.scheduler.run_sweeper)
        loops.spawn("room-metrics", lambda: self.room_metrics.run(self.presence.online))
        loops.spawn("clock", self._clock_loop)
        loops.spawn("loop-lag", self.metrics.watch_loop_lag)
        log.info("node %s up (clock offset to Redis %.1f ms)", self.node_id, self.clock.offset_ms)

    def background(self, task: asyncio.Task[Any]) -> None:
        """Keep a short-lived task referenced until it ends."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def health(self, timeout_s: float = 1.0) -> dict[str, str]:
        """Each part of the node, ``"ok"`` or what is wrong (``/healthz``): a PING alone would
        hide a script cache that cannot reload, a dead subscriber or a dead loop."""
        checks = {"redis": "ok", "scripts": "ok", "subscriber": "ok", "loops": "ok"}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            checks["redis"] = str(exc) or type(exc).__name__
        if checks["redis"] == "ok":
            try:
                await asyncio.wait_for(self.scripts.health_check(), timeout_s)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                checks["scripts"] = str(exc) or type(exc).__name__
        else:
            checks["scripts"] = "not checked: Redis does not answer"
        checks["subscriber"] = self.broker.health() or "ok"
        down = self.loops.down()
        if down:
            checks["loops"] = "; ".join(f"{name}: {why}" for name, why in sorted(down.items()))
        return checks

    async def _clock_loop(self) -> None:
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(30)
            try:
                await self.clock.sync(self.redis)
            except Exception:  # the last offset stays until the next sync
                reraise_if_cancelling()

    async def drain(self) -> None:
        """Close every WebSocket with 1012 (after the command in hand and what is queued)
        and wait for them, at most ``drain_timeout_s``; then drop what is left."""
        self.draining = True
        sessions = list(self.sessions)
        for session in sessions:
            session.drain()
        if sessions:
            done = asyncio.gather(*(s.done.wait() for s in sessions))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done, self.settings.drain_timeout_s)
        for conn in self.hub.connections():
            conn.abort()

    async def stop(self) -> None:
        await self.loops.stop()
        for task in self._background:
            task.cancel()
        for task in list(self._background):
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that died of a bug must not stop the shutdown
                log.exception("background task %s had failed", task.get_name())
        await self.presence.leave_all()
        try:  # the last second of entries and funnel events
            await self.room_metrics.flush()
        except (RedisError, OSError) as exc:
            log.warning("metrics not written at shutdown: %s", exc)
        await self.fanout.close()
        await self.seckill.batcher.close()
        await self.packets.batcher.close()
        await self.broker.close()
        await self.redis.aclose()

    # -- delivery --------------------------------------------------------------

    def _deliver(self, room: str, msg: dict[str, Any], payload: bytes) -> None:
        handler = self._handlers.get(msg.get("type", ""))
        if handler is not None:
            handler(room, msg)
        elif room:
            self.hub.deliver(room, msg, payload)

    def _push_presence(self, room: str, online: int) -> None:
        self.hub.deliver(room, {"type": "presence", "online": online})

    def _on_words(self, room: str, msg: dict[str, Any]) -> None:
        if room:
            self.danmaku.invalidate(room)
        else:  # the global list changed
            self.background(asyncio.create_task(self.danmaku.load_global_words(), name="reload-words"))

    def _on_subscribed(self, room: str) -> None:
        """Views kept current by notices start over whenever the node (re)subscribes."""
        if room:
            self.danmaku.invalidate(room)
            self.seckill.forget_room(room)
        else:
            self._on_words("", {})
            self._on_blocklist("", {})

    def _on_drop(self, room: str, msg: dict[str, Any]) -> None:
        self.seckill.on_message(room, msg)
        self.hub.deliver(room, msg)

    def _on_blocklist(self, room: str, msg: dict[str, Any]) -> None:
        self.background(asyncio.create_task(self.seckill.load_blocklist(), name="reload-blocklist"))

    def _on_kick(self, room: str, msg: dict[str, Any]) -> None:
        user = msg.get("user")
        for conn in self.hub.connections(room):
            if conn.user == user and not conn.is_host:
                conn.close(CloseCode.FORBIDDEN, str(msg.get("reason", "banned")))
