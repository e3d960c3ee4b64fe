"""One server process's services: built once by :func:`build_services`, held in a frozen
:class:`Services`, started and stopped in the order that keeps every promise.

The container does no work of its own: every behaviour lives in the service that
owns it (``rooms/``, ``danmaku/``, ``seckill/``, ``metrics/``), the WebSocket
sessions live in the gateway (gateway.py), and what the node does with each
pub/sub message lives in routing.py.  The app (app.py) builds it in its
``cleanup_ctx`` and handlers reach it as ``request.app[SERVICES]``.

Startup: sync the clock with Redis -> load the banned words and the blocklist ->
subscribe the node-wide channel -> start the background loops.  Shutdown (after
the gateway drained the sockets): stop the loops and the short tasks -> take the
node's viewers out of presence -> write the last second of metrics -> stop the
fan-out and the batchers (every waiting grab is answered) -> close Redis.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from .broker import Broker
from .clock import Clock
from .danmaku.fanout import DanmakuFanout
from .danmaku.likes import Likes
from .danmaku.service import DanmakuService
from .hub import Hub, QueueLimits
from .metrics.alerts import AlertRules
from .metrics.prom import Counters, Metrics
from .metrics.room import RoomMetrics
from .redisio import Keyspace, RedisClient, Scripts, Store, connect, connect_pubsub
from .redisio.client import REDIS_DOWN
from .rooms.presence import Presence
from .rooms.service import RoomService
from .routing import Router
from .seckill.grabs import Grabs
from .seckill.orders import Orders
from .seckill.packets import RedPacketService
from .seckill.scheduler import DropScheduler
from .seckill.service import SeckillService
from .serving import GuardStats
from .settings import Settings
from .supervisor import Loops
from .tasks import TaskSet, reraise_if_cancelling
from .video.limits import VideoLimits
from .video.service import VideoService

__all__ = ["Services", "build_services", "connect_services"]

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Everything one node runs, wired once."""

    settings: Settings
    node_id: str
    keys: Keyspace
    redis: RedisClient
    scripts: Scripts
    clock: Clock
    metrics: Metrics
    hub: Hub
    broker: Broker
    router: Router
    presence: Presence
    rooms: RoomService
    danmaku: DanmakuService
    fanout: DanmakuFanout
    likes: Likes
    seckill: SeckillService  # the drops: flash sales and coupons
    grabs: Grabs  # the grab path
    orders: Orders
    packets: RedPacketService
    scheduler: DropScheduler
    room_metrics: RoomMetrics
    video: VideoService
    loops: Loops
    tasks: TaskSet
    guard: GuardStats  # the HTTP connection guard's counters (serving.py), for /metrics

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.clock.sync(self.redis)
        await self.danmaku.load_global_words()
        await self.seckill.load_blocklist()
        await self.broker.start(self.router.deliver, self.router.on_subscribed)
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

    async def stop(self) -> None:
        await self.loops.stop()
        await self.tasks.stop()
        await self.presence.leave_all()
        try:  # the last second of entries and funnel events
            await self.room_metrics.flush()
        except REDIS_DOWN as exc:
            log.warning("metrics not written at shutdown: %s", exc)
        await self.video.close()
        await self.fanout.close()
        await self.grabs.batcher.close()
        await self.packets.batcher.close()
        await self.broker.close()
        await self.redis.aclose()

    async def health(self, timeout_s: float = 1.0) -> dict[str, str]:
        """Each part of the node, ``"ok"`` or what is wrong (``/healthz``): a PING alone would
        hide a script cache that cannot reload, a dead subscriber or a dead loop."""
        checks = {"redis": "ok", "scripts": "ok", "subscriber": "ok", "loops": "ok"}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout_s)
        except REDIS_DOWN as exc:
            checks["redis"] = str(exc) or type(exc).__name__
        if checks["redis"] == "ok":
            try:
                await asyncio.wait_for(self.scripts.health_check(), timeout_s)
            except REDIS_DOWN as exc:
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

    def counters(self) -> Counters:
        """The plain counters the services keep, for the Prometheus collector (a scrape)."""
        hub, fanout, grabs, packets = self.hub, self.fanout, self.grabs, self.packets
        cameras, frames, seconds, whep = self.video.totals()
        return Counters(
            connections=len(hub), rooms=hub.room_count, frames_sent=hub.stats.frames_sent,
            frames_dropped=hub.stats.frames_dropped, slow_closed=hub.stats.slow_closed,
            messages_delivered=hub.stats.messages_delivered,
            delivery_errors=hub.stats.delivery_errors + fanout.errors,
            danmaku_delivered=fanout.items_delivered, danmaku_thinned=fanout.items_thinned,
            rollbacks=fanout.rollbacks, grabs=grabs.counts, grabs_refused=grabs.fraud,
            grabs_answered_locally=grabs.local_answers, claims=packets.counts,
            drop_script_calls=grabs.batcher.calls + packets.batcher.calls,
            broker_received=self.broker.received, broker_errors=self.broker.errors,
            http_header_timeouts=self.guard.header_timeouts, http_malformed=self.guard.bad_requests,
            loop_failures=self.loops.failures(), loops_down=len(self.loops.down()),
            video_cameras=cameras, video_frames_out=frames, video_encode_seconds=seconds, whep_viewers=whep,
        )

    def _push_presence(self, room: str, online: int) -> None:
        self.hub.deliver(room, {"type": "presence", "online": online})


def build_services(settings: Settings, redis: RedisClient, subscriber: Redis) -> Services:
    """Wire one node's services (nothing runs until :meth:`Services.start`)."""
    s = settings
    node_id = secrets.token_hex(6)
    keys = Keyspace(s.key_prefix)
    clock = Clock()
    hub = Hub(QueueLimits(
        send_queue_frames=s.send_queue_frames,
        droppable_queue_frames=s.droppable_queue_frames,
        slow_consumer_timeout_s=s.slow_consumer_timeout_s,
        close_grace_s=s.close_grace_s,
    ))
    tasks, loops, guard = TaskSet(), Loops(), GuardStats()
    broker = Broker(redis, subscriber, keys, is_wanted=hub.has_room)
    metrics = Metrics()
    scripts = Scripts(redis, metrics)
    store = Store(redis, scripts, keys)
    presence = Presence(store, node_id, hub.has_user,
                        ttl_s=s.presence_ttl_s, beat_s=s.presence_beat_s, push_s=s.presence_push_s)
    rooms = RoomService(store, broker.publish, s.ended_room_ttl_s)
    danmaku = DanmakuService(store, s, rooms)
    fanout = DanmakuFanout(
        hub, danmaku.history_range, tick_s=s.danmaku_tick_s, items_per_tick=s.danmaku_items_per_tick,
        lag_items_per_tick=s.danmaku_lag_items_per_tick, lag_frames=s.danmaku_lag_frames,
        max_waiting=s.danmaku_room_burst,
    )
    likes = Likes(redis, keys, hub, fanout, s.likes_push_s)
    seckill = SeckillService(store, s, rooms, clock, broker.is_subscribed)
    packets = RedPacketService(store, s, rooms, clock, seckill.is_blocked)
    rooms.on_end.append(seckill.end_room)
    rooms.on_end.append(packets.end_room)
    scheduler = DropScheduler(store, clock, seckill, packets, node_id,
                              schedule_s=s.schedule_interval_s, sweep_s=s.sweep_interval_s)
    room_metrics = RoomMetrics(
        redis, keys, hub, clock, presence.online_cache, node_id,
        rules=AlertRules.from_settings(s), drops_of=seckill.history, packets_of=packets.claimed,
    )
    video = VideoService(store, rooms, broker.publish, VideoLimits(
        width=s.video_width, height=s.video_height, fps=s.video_fps, kbps=s.video_kbps, gop_s=s.video_gop_s,
        queue_packets=s.whep_queue_packets, camera_timeout_s=s.video_camera_timeout_s,
    ), ice_hosts=s.offered_ice_hosts, connect_media=lambda: connect(
        s.redis_url or "", cluster=s.redis_cluster, max_connections=8, decode=False,
    ), now_ms=clock.now_ms)
    rooms.on_end.append(video.end_room)
    services = Services(
        settings=s, node_id=node_id, keys=keys, redis=redis, scripts=scripts, clock=clock, metrics=metrics,
        hub=hub, broker=broker, router=Router(hub, fanout, danmaku, seckill, seckill.grabs, tasks), presence=presence,
        rooms=rooms, danmaku=danmaku, fanout=fanout, likes=likes, seckill=seckill, grabs=seckill.grabs,
        orders=seckill.orders, packets=packets,
        scheduler=scheduler, room_metrics=room_metrics, video=video, loops=loops, tasks=tasks, guard=guard,
    )
    metrics.observe(services)  # the collector reads the counters the services keep, at scrape time
    return services


def connect_services(settings: Settings) -> Services:
    """:func:`build_services` on new connections to ``settings.redis_url``."""
    if settings.redis_url is None:
        raise ValueError("the services need settings.redis_url (the CLI starts an embedded Redis)")
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    return build_services(settings, redis, connect_pubsub(settings.redis_url))
