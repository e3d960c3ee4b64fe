"""Live conversion metrics of a room: counted in Redis, read as the contract's body.

Where each number comes from:

- ``uv``: a HyperLogLog of users who entered (PFADD on each user's entry through a
  node); ``pv``: entries; ``online`` and ``peak_online``: presence.
- watch time: every node adds, once a second, the users it holds x the time
  since its last tick, so a node that dies simply stops adding (the time is
  bounded by its heartbeats).
- ``exposure``/``click``/``cart``: HyperLogLogs per room and per product, from
  the viewers' funnel events.
- orders and GMV: counted by the grab and pay scripts themselves, in each
  drop's own keys (orders and paid units in its meta, HyperLogLogs of its
  buyers, its orders and paid cents per minute), and summed over the room's
  drops when read: exact at once, and no per-order work in any node.
- ``danmaku``: the room's danmaku seq; ``likes``: the like total.
- red-packet claims and the money they paid out: the room's packets' own
  counters.
- markers on the series: pins and red packets are logged when they happen (a
  zset per room); flash-sale starts, sell-outs and ends come from the drops
  themselves (every drop the room ever had is kept in a set).
- alerts: judged at each push by :mod:`.alerts` on this node, which keeps the
  room's recent online samples; ``alert`` messages go to the hosts when one
  fires or clears, and the body lists those firing.

Entries, leaves and funnel events are tallied in memory (:mod:`.tally`) and
written once a second (and before a read on this node): a few commands per
room rather than a few per event.  A node that dies loses at most its last
second of them.

Distinct counts are HyperLogLogs (about 0.8 % standard error); counts and money
are exact.  Series are per epoch minute.

A read fetches the keys here into a :class:`.readings.RoomReadings`, and
:func:`.body.build_body` (pure) lays them out as the body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import Clock
from ..hub import Hub
from ..redisio import Keyspace
from ..redisio.client import REDIS_DOWN, RedisClient, json_object
from ..seckill.drop import Drop
from ..tasks import reraise_if_cancelling
from .alerts import AlertRules, AlertTracker, SaleState, evaluate
from .body import build_body, to_minute
from .readings import ROOM_SERIES, ProductFunnel, RoomReadings
from .tally import Tally

__all__ = ["RoomMetrics"]

#: a room's online count, read from Redis (presence)
OnlineOf = Callable[[str], Awaitable[int]]

log = logging.getLogger(__name__)

HLS_VIEWER_WINDOW_MS = 10_000  # an HLS player fetches its playlist every segment (about 2 s)



PUSH_CONCURRENCY = 16  # rooms whose bodies are read at once in a push


class RoomMetrics:
    def __init__(
        self, redis: RedisClient, keyspace: Keyspace, hub: Hub, clock: Clock, online: dict[str, int], node_id: str, *,
        rules: AlertRules, drops_of: Callable[[str], Awaitable[list[Drop]]],
        packets_of: Callable[[str], Awaitable[tuple[int, int, list[dict[str, Any]]]]],
    ) -> None:
        self._redis = redis
        self._keys = keyspace
        self._hub = hub
        self._clock = clock
        self._online = online  # Presence.online_cache
        self._node_id = node_id
        self._rules = rules
        self._drops_of = drops_of  # SeckillService.history
        self._packets_of = packets_of  # RedPacketService.claimed: (claims, cents, each packet) of the room
        self._settled_stats: dict[str, dict[str, int]] = {}  # stats of settled sales: they never change
        #: rooms whose hosts this node pushes to, kept a while after their last host left (a
        #: dashboard reload keeps its alerts and its online baseline)
        self._alerts: dict[str, AlertTracker] = {}
        self._last_tick = time.monotonic()
        self._tally = Tally()
        self.pushed = 0
        self.alerts_sent = 0

    # -- counting ------------------------------------------------------------------------

    def entered(self, room: str, user: str) -> None:
        k = self._keys.room(room)
        self._tally.add(k.metric("uv"), user)
        self._tally.count(k.metric("counts"), "pv")
        self._tally.count(k.metric("s:enter"), to_minute(self._clock.now_ms()))

    def left(self, room: str) -> None:
        self._tally.count(self._keys.room(room).metric("s:leave"), to_minute(self._clock.now_ms()))

    def funnel(self, room: str, user: str, kind: str, product_id: str) -> None:
        """``exposure``, ``click`` or ``cart`` of a product by a viewer."""
        k = self._keys.room(room)
        self._tally.add(k.metric(f"{kind}_uv"), user)
        self._tally.add(k.product_metric(product_id, f"{kind}_uv"), user)
        self._tally.count(k.metric("counts"), kind)
        self._tally.add(k.metric("products"), product_id, plain_set=True)

    def tick(self) -> None:
        """Once a second: watch time, the online series and peak, for the rooms this node holds."""
        now = time.monotonic()
        elapsed_ms = int((now - self._last_tick) * 1000)
        self._last_tick = now
        minute = to_minute(self._clock.now_ms())
        for room in self._hub.rooms():
            k = self._keys.room(room)
            self._tally.count(k.metric("counts"), "watch_ms", elapsed_ms * len(self._hub.users(room)))
            online = self._online.get(room)
            if online is not None:
                self._tally.put(k.metric("s:online"), minute, online)
                self._tally.highest(k.metric("peak"), "peak", online)

    async def flush(self) -> None:
        """Write what this node tallied since the last flush."""
        tally, self._tally = self._tally, Tally()
        if not tally:
            return
        try:
            await tally.write(self._redis)
        except BaseException:
            self._tally.absorb(tally)
            raise

    # -- reading -----------------------------------------------------------------------------

    async def body(self, room_id: str, online: int) -> dict[str, Any]:
        """The contract's ``metrics`` body for ``room_id`` (``GET .../metrics``), with the alerts as
        this node last judged them, or, with no host of the room here, judged now."""
        drops = await self._drops_of(room_id)
        body = await self._read(room_id, online, drops)
        tracker = self._alerts.get(room_id)
        if tracker is not None:
            body["alerts"] = tracker.firing()
        else:  # judged now, without the online history a push keeps
            current = self._evaluate(body, online, drops)
            body["alerts"] = [{**a, "status": "firing", "since_ms": None} for _, a in sorted(current.items())]
        return body

    async def _read(self, room_id: str, online: int, drops: list[Drop]) -> dict[str, Any]:
        """The body without ``alerts``: what :meth:`_fetch` reads, built by :func:`.body.build_body`."""
        await self.flush()  # this node's own events are in what it reads
        now = self._clock.now_ms()
        return build_body(await self._fetch(room_id, drops, now), drops, online=online, now_ms=now)

    async def _fetch(self, room_id: str, drops: list[Drop], now: int) -> RoomReadings:
        """The room's metric keys: one pipeline, and one more for the products."""
        k = self._keys.room(room_id)
        sales = [d for d in drops if d.kind == "sale"]
        unsettled = [d for d in sales if d.id not in self._settled_stats]
        pipe = self._redis.pipeline(transaction=False)
        for name in ("uv", "exposure_uv", "click_uv", "cart_uv"):
            pipe.pfcount(k.metric(name))
        for hll in ("order_uv", "buyer_uv"):  # distinct over all the room's sales: a union of their logs
            if sales:
                pipe.pfcount(*(getattr(self._keys.drop(d.id), hll) for d in sales))
            else:
                pipe.echo("0")
        pipe.zscore(k.metric("peak"), "peak")
        pipe.hgetall(k.metric("counts"))
        pipe.smembers(k.metric("products"))
        pipe.get(k.likes)
        pipe.get(k.seq)  # the danmaku count of a room older than its dm_count (its ids were dense)
        pipe.get(k.thinned)
        pipe.hmget(k.meta, ["started_ms", "status", "dm_count"])
        pipe.hgetall(k.products)
        pipe.zrange(k.metric("markers"), 0, -1)
        pipe.get(k.video_status)
        pipe.zcount(k.hls_clients, now - HLS_VIEWER_WINDOW_MS, "+inf")
        for name in ROOM_SERIES:
            pipe.hgetall(k.metric(f"s:{name}"))
        for d in unsettled:
            pipe.hgetall(self._keys.drop(d.id).stats)
        (uv, exposure_uv, click_uv, cart_uv, order_uv, buyer_uv, peak, raw_counts, funnel_products, likes, danmaku,
         thinned, (started_ms, status, dm_count), raw_catalog, logged_markers, video, hls_viewers,
         *rest) = await pipe.execute()
        if dm_count is not None:  # the room's count; its ids (``danmaku``, read above) may jump
            danmaku = dm_count
        room_series, fresh_stats = rest[:len(ROOM_SERIES)], rest[len(ROOM_SERIES):]
        stats = self._sale_stats(sales, unsettled, fresh_stats, now)
        counts = {key: int(v) for key, v in raw_counts.items()}
        catalog = {p: json.loads(raw) for p, raw in raw_catalog.items()}
        claims, claimed_cents, packets = await self._packets_of(room_id)
        return RoomReadings(
            room_id=room_id, uv=uv, exposure_uv=exposure_uv, click_uv=click_uv, cart_uv=cart_uv,
            order_uv=int(order_uv), buyer_uv=int(buyer_uv), peak_online=int(peak or 0),
            pv=counts.get("pv", 0), watch_ms=counts.get("watch_ms", 0), likes=int(likes or 0),
            danmaku=int(danmaku or 0), danmaku_thinned=int(thinned or 0),
            started_ms=int(started_ms) if started_ms else None, room_status=status, catalog=catalog,
            products=await self._product_funnels(k, sorted(set(funnel_products) | set(catalog))),
            logged_markers=[json.loads(raw) for raw in logged_markers],
            room_series={name: {int(m): int(v) for m, v in h.items()}
                         for name, h in zip(ROOM_SERIES, room_series, strict=True)},
            sale_stats=stats, red_packet_claims=claims, red_packet_cents=claimed_cents, red_packets=packets,
            video=json_object(video), hls_viewers=int(hls_viewers or 0),
        )

    def _sale_stats(self, sales: list[Drop], unsettled: list[Drop], fresh: list[dict[str, str]],
                    now: int) -> dict[str, dict[str, int]]:
        """Each sale's per-minute orders and paid cents and its last payment; a settled sale's
        (ended, nothing left to pay) are kept, as they cannot change."""
        stats = {d.id: self._settled_stats[d.id] for d in sales if d.id in self._settled_stats}
        for d, raw in zip(unsettled, fresh, strict=True):
            stats[d.id] = {name: int(v) for name, v in raw.items()}
            if d.status(now) == "ended" and d.pending == 0:
                self._settled_stats[d.id] = stats[d.id]
        if len(self._settled_stats) > 10_000:
            self._settled_stats.clear()
        return stats

    async def _product_funnels(self, k: Any, products: list[str]) -> dict[str, ProductFunnel]:
        """Each product's exposure and click HyperLogLogs, in the order given."""
        if not products:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for p in products:
            pipe.pfcount(k.product_metric(p, "exposure_uv"))
            pipe.pfcount(k.product_metric(p, "click_uv"))
        r = await pipe.execute()
        return {p: ProductFunnel(int(r[2 * i]), int(r[2 * i + 1])) for i, p in enumerate(products)}

    # -- alerts and the push -------------------------------------------------------------------

    def _evaluate(self, body: dict[str, Any], recent_peak: int, drops: list[Drop]) -> dict[str, dict[str, Any]]:
        now = body["ts_ms"]
        sales = [SaleState(d.id, d.product, d.status(now), d.left, d.pending, d.paid, d.starts, d.stock)
                 for d in drops if d.kind == "sale"]
        return evaluate(self._rules, now_ms=now, online=body["online"], recent_peak=recent_peak,
                        room_live=body["room_status"] == "live", sales=sales,
                        last_paid_ms=body["last_paid_at_ms"] or 0)

    async def _push_room(self, room: str, online_of: OnlineOf) -> None:
        online = await online_of(room)
        drops = await self._drops_of(room)
        body = await self._read(room, online, drops)
        tracker = self._alerts.setdefault(room, AlertTracker())
        tracker.seen = time.monotonic()
        recent_peak = tracker.online.add(body["ts_ms"], online, int(self._rules.online_window_s * 1000))
        events = tracker.update(body["ts_ms"], self._evaluate(body, recent_peak, drops),
                                int(self._rules.clear_after_s * 1000))
        for event in events:
            self._hub.deliver(room, event, hosts_only=True)
        self.alerts_sent += len(events)
        body["alerts"] = tracker.firing()
        self._hub.deliver(room, {"type": "metrics", **body}, hosts_only=True)
        self.pushed += 1

    async def push(self, online_of: OnlineOf) -> None:
        """Send ``metrics`` (and ``alert`` when one fires or clears) to the hosts on this node,
        a few rooms at a time; a room that fails is logged and does not hold up the others."""
        rooms = [r for r in self._hub.rooms() if any(c.is_host for c in self._hub.room_connections(r))]
        forget_before = time.monotonic() - self._rules.online_window_s - 60
        for room in [r for r, t in self._alerts.items() if t.seen < forget_before and r not in rooms]:
            del self._alerts[room]
        for i in range(0, len(rooms), PUSH_CONCURRENCY):
            chunk = rooms[i:i + PUSH_CONCURRENCY]
            results = await asyncio.gather(*(self._push_room(r, online_of) for r in chunk), return_exceptions=True)
            reraise_if_cancelling()
            for room, result in zip(chunk, results, strict=True):
                if isinstance(result, REDIS_DOWN):
                    log.warning("metrics push for room %s failed: %s", room, result)
                elif isinstance(result, BaseException):
                    log.error("metrics push for room %s failed", room, exc_info=result)

    async def run(self, online_of: OnlineOf) -> None:
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(1.0)
            try:
                self.tick()
                await self.flush()
                await self.push(online_of)
            except REDIS_DOWN as exc:
                reraise_if_cancelling()
                log.warning("metrics tick failed: %s", exc)
            except Exception:
                reraise_if_cancelling()
                log.exception("metrics tick failed")
