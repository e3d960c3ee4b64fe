"""Live conversion metrics of a room: counted in Redis, read as the contract's body.

Where each number comes from:

- ``uv``: a HyperLogLog of users who entered (PFADD on each user's entry through a
  node); ``pv``: entries; ``online`` and ``peak_online``: presence.
- watch time: every node adds, once a second, the users it holds x the time
  since its last tick, so a node that dies simply stops adding (the time is
  bounded by its heartbeats).
- ``exposure``/``click``/``cart``: HyperLogLogs per room and per product, from
  the viewers' funnel events.
- orders and GMV: read from the order stream by a consumer group (each entry
  counted by one node): ``pending`` entries count orders, ``paid`` ones buyers
  and GMV (paid orders only).
- ``danmaku``: the room's danmaku seq; ``likes``: the like total.
- red-packet claims and the money they paid out: from the wallet stream, by
  the same consumer group as the orders.
- markers on the series: pins and red packets are logged when they happen (a
  zset per room); flash-sale starts, sell-outs and ends come from the drops
  themselves (every drop the room ever had is kept in a set).
- alerts: judged at each push by :mod:`.alerts` on this node, which keeps the
  room's recent online samples; ``alert`` messages go to the hosts when one
  fires or clears, and the body lists those firing.

Distinct counts are HyperLogLogs (about 0.8 % standard error); counts and money
are exact.  Series are per epoch minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from ..hub import Hub
from ..redisio import Keyspace
from ..seckill.service import Drop
from ..tasks import reraise_if_cancelling
from .alerts import AlertRules, AlertTracker, SaleState, evaluate
from .ratios import ratios, windows

__all__ = ["RoomMetrics"]

log = logging.getLogger(__name__)

SERIES = ("online", "enter", "leave", "gmv_cents", "order_count", "danmaku")
GROUP = "metrics"
SERIES_MINUTES = 240  # the series cover the last four hours of the room at most


def _minute(ms: int) -> int:
    return ms // 60_000


def _sale_markers(drops: list[Drop], now: int) -> list[dict[str, Any]]:
    """Start, sell-out and end of each flash sale or coupon, as series markers (pure)."""
    out = []
    for d in drops:
        ref = {"sale_id" if d.kind == "sale" else "coupon_id": d.id, "product_id": d.product}
        prefix = "sale" if d.kind == "sale" else "coupon"
        if d.starts <= now:
            out.append({"kind": f"{prefix}_start", "at_ms": d.starts, **ref})
        if d.sold_out_ms:
            out.append({"kind": "sold_out", "at_ms": d.sold_out_ms, **ref})
        if d.status(now) == "ended":
            out.append({"kind": f"{prefix}_end", "at_ms": min(d.ends, now), **ref})
    return out


class RoomMetrics:
    def __init__(
        self, redis: Any, keyspace: Keyspace, hub: Hub, clock: Any, online: Any, node_id: str, *,
        rules: AlertRules, drops_of: Callable[[str], Awaitable[list[Drop]]],
    ) -> None:
        self._redis = redis
        self._keys = keyspace
        self._hub = hub
        self._clock = clock
        self._online = online  # Presence.online_cache
        self._node_id = node_id
        self._rules = rules
        self._drops_of = drops_of  # SeckillService.history
        self._alerts: dict[str, AlertTracker] = {}  # rooms whose hosts this node pushes to
        self._last_tick = time.monotonic()
        self.pushed = 0
        self.alerts_sent = 0

    # -- counting ------------------------------------------------------------------------

    async def entered(self, room: str, user: str) -> None:
        k = self._keys.room(room)
        pipe = self._redis.pipeline(transaction=False)
        pipe.pfadd(k.metric("uv"), user)
        pipe.incr(k.metric("pv"))
        pipe.hincrby(k.metric("s:enter"), _minute(self._clock.now_ms()), 1)
        await pipe.execute()

    async def left(self, room: str) -> None:
        await self._redis.hincrby(self._keys.room(room).metric("s:leave"), _minute(self._clock.now_ms()), 1)

    async def funnel(self, room: str, user: str, kind: str, product_id: str) -> None:
        """``exposure``, ``click`` or ``cart`` of a product by a viewer."""
        k = self._keys.room(room)
        pipe = self._redis.pipeline(transaction=False)
        pipe.pfadd(k.metric(f"{kind}_uv"), user)
        pipe.pfadd(k.product_metric(product_id, f"{kind}_uv"), user)
        pipe.hincrby(k.metric("counts"), kind, 1)
        pipe.sadd(k.metric("products"), product_id)
        await pipe.execute()

    async def tick(self) -> None:
        """Once a second: watch time, the online series and peak, for the rooms this node holds."""
        now = time.monotonic()
        elapsed_ms = int((now - self._last_tick) * 1000)
        self._last_tick = now
        minute = _minute(self._clock.now_ms())
        rooms = self._hub.rooms()
        if not rooms:
            return
        pipe = self._redis.pipeline(transaction=False)
        for room in rooms:
            k = self._keys.room(room)
            pipe.incrby(k.metric("watch_ms"), elapsed_ms * len(self._hub.users(room)))
            online = self._online.get(room)
            if online is not None:
                pipe.hset(k.metric("s:online"), minute, online)
                pipe.zadd(k.metric("peak"), {"peak": online}, gt=True)
        await pipe.execute()

    async def consume_orders(self) -> None:
        """Read the order and wallet streams as one consumer of their ``metrics`` groups (forever):
        each entry is counted by one node, at least once."""
        count = {self._keys.orders_stream: self._count_orders, self._keys.wallet_stream: self._count_claims}
        for stream in count:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        while True:
            reraise_if_cancelling()
            try:
                batches = await self._redis.xreadgroup(
                    GROUP, self._node_id, dict.fromkeys(count, ">"), count=500, block=1000
                )
            except (RedisError, OSError) as exc:
                reraise_if_cancelling()
                log.warning("order stream read failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for stream, entries in batches or []:
                if entries:
                    await count[stream](entries)
                    await self._redis.xack(stream, GROUP, *[eid for eid, _ in entries])

    async def _count_claims(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for _, f in entries:
            if f.get("kind") == "claim":
                counts = self._keys.room(f["room_id"]).metric("counts")
                pipe.hincrby(counts, "red_packet_claims", 1)
                pipe.hincrby(counts, "red_packet_cents", int(f["amount_cents"]))
        await pipe.execute()

    async def _count_orders(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for _, f in entries:
            k = self._keys.room(f["room_id"])
            minute = _minute(int(float(f["at_ms"])))
            product = f.get("product_id") or ""
            cents = int(f["price_cents"]) * int(f["qty"])
            if f["status"] == "pending":
                pipe.hincrby(k.metric("counts"), "order_count", 1)
                pipe.pfadd(k.metric("order_uv"), f["user"])
                pipe.hincrby(k.metric("s:order_count"), minute, 1)
                if product:
                    pipe.hincrby(k.metric("counts"), f"p:{product}:order_count", 1)
            elif f["status"] == "paid":
                pipe.hincrby(k.metric("counts"), "paid_count", 1)
                pipe.hincrby(k.metric("counts"), "gmv_cents", cents)
                pipe.pfadd(k.metric("buyer_uv"), f["user"])
                pipe.hincrby(k.metric("s:gmv_cents"), minute, cents)
                pipe.zadd(k.metric("peak"), {"last_paid": int(float(f["at_ms"]))}, gt=True)
                if product:
                    pipe.hincrby(k.metric("counts"), f"p:{product}:paid_count", 1)
                    pipe.hincrby(k.metric("counts"), f"p:{product}:gmv_cents", cents)
            if product:
                pipe.sadd(k.metric("products"), product)
        await pipe.execute()

    # -- reading -----------------------------------------------------------------------------

    async def body(self, room_id: str, online: int) -> dict[str, Any]:
        """The contract's ``metrics`` body for ``room_id``, with the windows, the markers, the
        room's drops and the alerts firing (as this node last judged them)."""
        k = self._keys.room(room_id)
        pipe = self._redis.pipeline(transaction=False)
        for name in ("uv", "exposure_uv", "click_uv", "order_uv", "buyer_uv", "cart_uv"):
            pipe.pfcount(k.metric(name))
        pipe.get(k.metric("pv"))
        pipe.get(k.metric("watch_ms"))
        pipe.zscore(k.metric("peak"), "peak")
        pipe.hgetall(k.metric("counts"))
        pipe.smembers(k.metric("products"))
        pipe.get(k.likes)
        pipe.get(k.seq)
        pipe.get(k.thinned)
        pipe.hget(k.meta, "started_ms")
        pipe.hgetall(k.products)
        pipe.zrange(k.metric("markers"), 0, -1)
        for name in SERIES:
            pipe.hgetall(k.metric(f"s:{name}"))
        (uv, exposure_uv, click_uv, order_uv, buyer_uv, cart_uv, pv, watch_ms, peak, raw_counts, funnel_products,
         likes, danmaku, thinned, started_ms, raw_catalog, logged_markers, *raw_series) = await pipe.execute()
        drops = await self._drops_of(room_id)
        pv, watch_ms, peak = int(pv or 0), int(watch_ms or 0), int(peak or 0)
        counts = {key: int(v) for key, v in raw_counts.items()}
        likes, danmaku, thinned = int(likes or 0), int(danmaku or 0), int(thinned or 0)
        catalog = {p: json.loads(raw) for p, raw in raw_catalog.items()}
        now = self._clock.now_ms()
        started = int(started_ms) if started_ms else now
        first = max(_minute(started), _minute(now) - SERIES_MINUTES + 1)
        series = {name: [int(h.get(str(m), 0)) for m in range(first, _minute(now) + 1)]
                  for name, h in zip(SERIES, raw_series, strict=True)}
        c = {"uv": uv, "pv": pv, "watch_ms": watch_ms, "exposure_uv": exposure_uv, "click_uv": click_uv,
             "buyer_uv": buyer_uv, "gmv_cents": counts.get("gmv_cents", 0)}
        body: dict[str, Any] = {
            "room_id": room_id, "ts_ms": now, "online": online, "peak_online": max(peak, online),
            "uv": uv, "pv": pv, "likes": likes, "danmaku": danmaku,
            "exposure_uv": exposure_uv, "click_uv": click_uv, "cart_uv": cart_uv,
            "order_count": counts.get("order_count", 0), "order_uv": order_uv,
            "paid_count": counts.get("paid_count", 0), "buyer_uv": buyer_uv, "gmv_cents": counts.get("gmv_cents", 0),
            "red_packet_claims": counts.get("red_packet_claims", 0),
            "red_packet_cents": counts.get("red_packet_cents", 0),
            "danmaku_thinned": thinned, "series_start_minute": first, **ratios(c),
        }
        body["products"] = await self._products(k, sorted(set(funnel_products) | set(catalog)), counts, catalog, drops)
        body["series"] = series
        body["windows"] = windows(series)
        body["markers"] = self._markers(logged_markers, drops, first * 60_000, now)
        body["drops"] = [{"kind": d.kind, **d.public(now)} for d in drops]
        tracker = self._alerts.get(room_id)
        if tracker is not None:
            body["alerts"] = tracker.firing()
        else:  # no host here: judged now, without the online history a push keeps
            current = self._evaluate(now, online, online, drops, await self._last_paid(k))
            body["alerts"] = [{**a, "status": "firing", "since_ms": None} for _, a in sorted(current.items())]
        return body

    @staticmethod
    def _markers(logged: list[str], drops: list[Drop], since_ms: int, now: int) -> list[dict[str, Any]]:
        """Events on the series, oldest first: pins and red packets (logged), and the drops'
        starts, sell-outs and ends.  Each has ``kind``, ``at_ms`` and ``minute``."""
        events = []
        for raw in logged:
            event = json.loads(raw)
            event["at_ms"] = event.pop("at")
            events.append(event)
        events += _sale_markers(drops, now)
        marks = [e for e in events if since_ms <= e["at_ms"] <= now]
        for e in marks:
            e["minute"] = _minute(e["at_ms"])
        return sorted(marks, key=lambda e: (e["at_ms"], e["kind"]))

    async def _products(self, k: Any, products: list[str], counts: dict[str, int], catalog: dict[str, Any],
                        drops: list[Drop]) -> list[dict[str, Any]]:
        if not products:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for p in products:
            pipe.pfcount(k.product_metric(p, "exposure_uv"))
            pipe.pfcount(k.product_metric(p, "click_uv"))
        r = await pipe.execute()
        now = self._clock.now_ms()
        out = []
        for i, p in enumerate(products):
            row = {"product_id": p, "exposure_uv": int(r[2 * i]), "click_uv": int(r[2 * i + 1]),
                   "order_count": counts.get(f"p:{p}:order_count", 0), "paid_count": counts.get(f"p:{p}:paid_count", 0),
                   "gmv_cents": counts.get(f"p:{p}:gmv_cents", 0)}
            if p in catalog:
                row.update(title=catalog[p].get("title"), price_cents=catalog[p].get("price_cents"))
            live = [d for d in drops if d.product == p and d.kind == "sale" and d.status(now) in ("live", "countdown")]
            if live:
                row["stock_left"] = sum(d.left for d in live)
            out.append(row)
        return out

    # -- alerts and the push -------------------------------------------------------------------

    async def _judge(self, room: str, online: int) -> list[dict[str, Any]]:
        """Evaluate the alert rules for ``room``; the ``alert`` messages to send."""
        tracker = self._alerts.setdefault(room, AlertTracker())
        now = self._clock.now_ms()
        recent_peak = tracker.online.add(now, online, int(self._rules.online_window_s * 1000))
        last_paid = await self._last_paid(self._keys.room(room))
        return tracker.update(now, self._evaluate(now, online, recent_peak, await self._drops_of(room), last_paid))

    async def _last_paid(self, k: Any) -> int:
        return int(await self._redis.zscore(k.metric("peak"), "last_paid") or 0)

    def _evaluate(self, now: int, online: int, recent_peak: int, drops: list[Drop],
                  last_paid: int) -> dict[str, dict[str, Any]]:
        sales = [SaleState(d.id, d.product, d.status(now), d.left, d.pending, d.paid, d.starts)
                 for d in drops if d.kind == "sale"]
        return evaluate(self._rules, now_ms=now, online=online, recent_peak=recent_peak, sales=sales,
                        last_paid_ms=last_paid)

    async def push(self, online_of: Any) -> None:
        """Send ``metrics`` (and ``alert`` when one fires or clears) to the hosts on this node."""
        rooms = [r for r in self._hub.rooms() if any(c.is_host for c in self._hub.room_connections(r))]
        for room in set(self._alerts) - set(rooms):  # no host here any more: judge afresh next time
            del self._alerts[room]
        for room in rooms:
            online = await online_of(room)
            for event in await self._judge(room, online):
                self._hub.deliver(room, event, hosts_only=True)
                self.alerts_sent += 1
            body = await self.body(room, online)
            self._hub.deliver(room, {"type": "metrics", **body}, hosts_only=True)
            self.pushed += 1

    async def run(self, online_of: Any) -> None:
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(1.0)
            try:
                await self.tick()
                await self.push(online_of)
            except (RedisError, OSError) as exc:
                reraise_if_cancelling()
                log.warning("metrics tick failed: %s", exc)
            except Exception:
                reraise_if_cancelling()
                log.exception("metrics tick failed")
