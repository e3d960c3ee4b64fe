"""Flash sales and coupons ("drops") on Redis Lua atomic stock, with orders.

Every decision about stock, limits, idempotency and order state is made by a
``seckill_*.lua`` script in the drop's slot (``{d:<id>}``).  This module
checks input, maps script answers to the contract, keeps a node-local view
of each drop (from its broadcasts) to answer hopeless grabs without Redis,
and runs the anti-fraud rules that need no shared state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..redisio import Keyspace, Scripts
from ..redisio.keyspace import DropKeys, RoomKeys
from ..rooms.service import MAX_PRICE_CENTS, RoomService, check_id, check_int
from ..settings import Settings
from ..wire import ID_RE
from .batcher import GrabBatcher, GrabRequest

__all__ = ["Drop", "SeckillService", "drop_status", "too_soon"]

log = logging.getLogger(__name__)

MAX_STOCK = 1_000_000
MAX_COUNTDOWN_S = 7 * 24 * 3600
MAX_DURATION_S = 7 * 24 * 3600
KIND_FIELD = {"sale": "sale_id", "coupon": "coupon_id"}
SETTLED_CACHE = 10_000  # settled drops kept in memory for the metrics (then the cache starts over)


def drop_status(ended: bool, starts: int, ends: int, left: int, now: int) -> str:
    """The contract's status of a drop at ``now`` (pure; the same rule as ``_seckill_lib.lua``)."""
    if ended or now >= ends:
        return "ended"
    if now < starts:
        return "countdown"
    if left <= 0:
        return "sold_out"
    return "live"


def too_soon(now_ms: int, starts_ms: int, rtt_ms: int | None) -> bool:
    """A grab sent when the client's synced countdown hit zero reaches the server about one
    one-way delay (rtt / 2) after the start.  One that arrives in less than half of that
    was fired before the client's own clock said the sale had started (pure)."""
    if rtt_ms is None or rtt_ms <= 0:
        return False
    since = now_ms - starts_ms
    return 0 <= since < rtt_ms // 4


@dataclass(slots=True)
class Drop:
    kind: str
    id: str
    room: str
    product: str
    price: int
    discount: int
    stock: int
    left: int
    pending: int
    paid: int
    per_user: int
    starts: int
    ends: int
    pay_ms: int
    ended: bool
    sold_out_ms: int = 0  # when it last sold out (0: never)
    orders: int = 0  # orders taken (sales) or coupons won, ever
    title: str | None = None  # the product's title and price when the drop was made
    list_price: int | None = None

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Drop:
        return cls(
            kind=h["kind"], id=h["id"], room=h["room"], product=h["product"], price=int(h["price"]),
            discount=int(h.get("discount") or 0), stock=int(h["stock"]), left=int(h["left"]),
            pending=int(h["pending"]), paid=int(h["paid"]), per_user=int(h["per_user"]),
            starts=int(float(h["starts"])), ends=int(float(h["ends"])), pay_ms=int(h.get("pay_ms") or 0),
            ended=h.get("ended") == "1", sold_out_ms=int(h.get("sold_out_ms") or 0), orders=int(h.get("orders") or h.get("seq") or 0),
            title=h.get("title"), list_price=int(h["list_price"]) if h.get("list_price") else None,
        )

    def status(self, now: int) -> str:
        return drop_status(self.ended, self.starts, self.ends, self.left, now)

    def _product(self) -> dict[str, Any]:
        """The product's title and list price as they were when the drop was made (if known)."""
        out: dict[str, Any] = {}
        if self.title is not None:
            out["title"] = self.title
        if self.list_price is not None:
            out["original_price_cents"] = self.list_price
        return out

    def message(self, now: int) -> dict[str, Any]:
        """The ``flash_sale`` / ``coupon`` broadcast body."""
        msg: dict[str, Any] = {
            "type": "flash_sale" if self.kind == "sale" else "coupon",
            KIND_FIELD[self.kind]: self.id,
            "product_id": self.product,
            "status": self.status(now),
            "starts_at_ms": self.starts,
            "ends_at_ms": self.ends,
            "stock_left": self.left,
            "price_cents": self.price,
            "stock": self.stock,
            "per_user_limit": self.per_user,
            **self._product(),
        }
        if self.kind == "coupon":
            msg["discount_cents"] = self.discount
        return msg

    def public(self, now: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            KIND_FIELD[self.kind]: self.id,
            "room_id": self.room,
            "product_id": self.product,
            "status": self.status(now),
            "stock": self.stock,
            "stock_left": self.left,
            "per_user_limit": self.per_user,
            "starts_at_ms": self.starts,
            "ends_at_ms": self.ends,
            "price_cents": self.price,
            **self._product(),
        }
        if self.kind == "sale":
            body.update(pending=self.pending, paid=self.paid, pay_timeout_s=self.pay_ms // 1000)
        else:
            body.update(claimed=self.paid, discount_cents=self.discount)
        return body


@dataclass(slots=True)
class _Seen:
    """What this node knows of a drop from its broadcasts.

    ``holders``: everyone who ever won it, loaded once after a broadcast said
    sold out or ended.  Their grabs may be retries of a grab that won, so
    they go to Redis for their first answer; everyone else is answered here.
    """

    room: str
    kind: str
    starts: int
    ends: int
    left: int
    status: str
    holders: frozenset[str] | None = None
    loading: asyncio.Future[frozenset[str]] | None = None


class SeckillService:
    def __init__(
        self,
        redis: Any,
        scripts: Scripts,
        keyspace: Keyspace,
        settings: Settings,
        rooms: RoomService,
        clock: Clock,
        is_subscribed: Any,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._keys = keyspace
        self._s = settings
        self._rooms = rooms
        self._clock = clock
        self._is_subscribed = is_subscribed
        self._seen: dict[str, _Seen] = {}
        self._settled: dict[str, Drop] = {}  # ended drops with nothing left to pay: they never change
        self.blocklist: frozenset[str] = frozenset()
        self.batcher = GrabBatcher(self._run_batch, max_batch=settings.grab_batch_max)
        self.counts: dict[tuple[str, str], int] = {}  # (kind, answer) -> grabs answered
        self.fraud: dict[str, int] = {}  # rule -> grabs refused by it
        self.local_answers = 0

    # -- creating ----------------------------------------------------------------

    async def create(self, room_id: str, who: Principal, body: dict[str, Any], kind: str) -> dict[str, Any]:
        room = await self._rooms.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        id_field = KIND_FIELD[kind]
        drop_id = body.get(id_field)
        drop_id = secrets.token_hex(6) if drop_id is None else check_id(drop_id, id_field)
        if "." in drop_id:
            raise Invalid(id_field, f"'{id_field}' must not contain '.'")
        product_id = check_id(body.get("product_id"), "product_id")
        product = await self._rooms.product(room_id, product_id)
        if product is None:
            raise NotFound(f"product {product_id!r} not found in room {room_id!r}")
        stock = check_int(body.get("stock"), "stock", 1, MAX_STOCK)
        per_user = check_int(body.get("per_user_limit", 1), "per_user_limit", 1, stock)
        duration_s = check_int(body.get("duration_s", 300), "duration_s", 1, MAX_DURATION_S)
        if kind == "sale":
            price = check_int(body.get("price_cents"), "price_cents", 0, MAX_PRICE_CENTS)
            discount = 0
            pay_s = check_int(body.get("pay_timeout_s", 900), "pay_timeout_s", 1, 24 * 3600)
        else:
            price = product.price_cents
            discount = check_int(body.get("discount_cents"), "discount_cents", 1, MAX_PRICE_CENTS)
            pay_s = 0
        countdown, starts_at = body.get("countdown_s"), body.get("starts_at_ms")
        if countdown is not None and starts_at is not None:
            raise Invalid("starts_at_ms", "give countdown_s or starts_at_ms, not both")
        countdown_ms = 1000 * check_int(0 if countdown is None else countdown, "countdown_s", 0, MAX_COUNTDOWN_S)
        starts_ms = 0
        if starts_at is not None:
            now = self._clock.now_ms()
            starts_ms = check_int(starts_at, "starts_at_ms", now - 60_000, now + MAX_COUNTDOWN_S * 1000)
        dk = self._keys.drop(drop_id)
        rk = self._keys.room(room_id)
        # Bookkeeping in other slots first, so that a drop never exists unscheduled or unswept;
        # the schedule's times are estimates until the script fixes them (an early entry just
        # comes back: the scheduler claims on Redis's clock and finishes only what is due).
        now = self._clock.now_ms()
        starts_guess = starts_ms or now + countdown_ms
        await self._book(rk, drop_id, starts_guess, starts_guess + duration_s * 1000)
        code, starts, ends = await self._scripts.seckill_create(
            keys=[dk.meta],
            args=[kind, drop_id, room_id, product_id, price, discount, stock, per_user, starts_ms, countdown_ms,
                  duration_s * 1000, pay_s * 1000, rk.channel, product.title, product.price_cents],
        )
        drop = await self._load(drop_id)
        if drop is None or drop.kind != kind or drop.room != room_id:  # the id is another room's or kind's
            pipe = self._redis.pipeline(transaction=False)
            pipe.srem(rk.drops, drop_id)
            if drop is not None:  # its own times back in the schedule
                pipe.zadd(self._keys.schedule, {f"start:{drop_id}": drop.starts, f"end:{drop_id}": drop.ends})
            await pipe.execute()
            raise Conflict(f"{id_field} {drop_id!r} exists")
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._keys.schedule, {f"start:{drop_id}": int(starts), f"end:{drop_id}": int(ends)})
        pipe.sadd(rk.metric("drops"), drop_id)  # kept after the drop ends: the host's series marks it
        await pipe.execute()
        return drop.public(self._clock.now_ms())

    async def _book(self, rk: RoomKeys, drop_id: str, starts: int, ends: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(rk.drops, drop_id)
        pipe.sadd(self._keys.active_drops, drop_id)
        pipe.zadd(self._keys.schedule, {f"start:{drop_id}": starts, f"end:{drop_id}": ends})
        await pipe.execute()

    # -- reading -------------------------------------------------------------------

    async def _load(self, drop_id: str) -> Drop | None:
        if not ID_RE.match(drop_id):
            return None
        h = await self._redis.hgetall(self._keys.drop(drop_id).meta)
        return Drop.from_hash(h) if h else None

    async def get(self, room_id: str, drop_id: str, kind: str) -> dict[str, Any]:
        drop = await self._load(drop_id)
        if drop is None or drop.kind != kind or drop.room != room_id:
            raise NotFound(f"{KIND_FIELD[kind]} {drop_id!r} not found in room {room_id!r}")
        return drop.public(self._clock.now_ms())

    async def room_drops(self, room_id: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The broadcast bodies of the room's drops that have not ended (for ``welcome``); ``ids``:
        the room's drop set, if the caller read it already."""
        if ids is None:
            ids = sorted(await self._redis.smembers(self._keys.room(room_id).drops))
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self._keys.drop(i).meta)
        hashes = await pipe.execute()
        now = self._clock.now_ms()
        drops = [d for d in (Drop.from_hash(h) for h in hashes if h) if d.room == room_id]
        return [d.message(now) for d in sorted(drops, key=lambda d: d.starts) if d.status(now) != "ended"]

    async def history(self, room_id: str) -> list[Drop]:
        """Every drop the room ever had, ended ones too, by start (the host's metrics, read every
        second).  Settled drops (ended, nothing left to pay) never change again: read once."""
        ids = sorted(await self._redis.smembers(self._keys.room(room_id).metric("drops")))
        fresh = [i for i in ids if i not in self._settled]
        loaded: dict[str, Drop] = {}
        if fresh:
            pipe = self._redis.pipeline(transaction=False)
            for i in fresh:
                pipe.hgetall(self._keys.drop(i).meta)
            now = self._clock.now_ms()
            if len(self._settled) > SETTLED_CACHE:
                self._settled.clear()
            for h in await pipe.execute():
                if h:
                    d = Drop.from_hash(h)
                    loaded[d.id] = d
                    if d.status(now) == "ended" and d.pending == 0:
                        self._settled[d.id] = d
        drops = (self._settled.get(i) or loaded.get(i) for i in ids)
        return sorted((d for d in drops if d is not None and d.room == room_id), key=lambda d: (d.starts, d.id))

    # -- node-local view -------------------------------------------------------------

    def on_message(self, room: str, msg: dict[str, Any]) -> None:
        """A ``flash_sale`` / ``coupon`` broadcast passed through this node."""
        kind = "sale" if msg.get("type") == "flash_sale" else "coupon"
        drop_id = msg.get(KIND_FIELD[kind])
        if isinstance(drop_id, str):
            self._seen[drop_id] = _Seen(room, kind, msg["starts_at_ms"], msg["ends_at_ms"], msg["stock_left"], msg["status"])

    async def _holders(self, drop_id: str, seen: _Seen) -> frozenset[str]:
        if seen.holders is not None:
            return seen.holders
        if seen.loading is None:  # one HKEYS per sold-out or end, however many grabs wait for it
            seen.loading = asyncio.get_running_loop().create_future()
            try:
                seen.holders = frozenset(await self._redis.smembers(self._keys.drop(drop_id).winners))
                seen.loading.set_result(seen.holders)
            except BaseException as exc:
                seen.loading.set_exception(exc)
                seen.loading.exception()  # retrieved: the waiters below re-raise it
                seen.loading = None
                raise
            return seen.holders
        return await asyncio.shield(seen.loading)

    def forget_room(self, room: str) -> None:
        for drop_id in [d for d, s in self._seen.items() if s.room == room]:
            del self._seen[drop_id]

    # -- grabbing ----------------------------------------------------------------------

    def _answer(self, kind: str, drop_id: str, answer: str, **extra: Any) -> dict[str, Any]:
        self.counts[(kind, answer)] = self.counts.get((kind, answer), 0) + 1
        result: dict[str, Any] = {"type": "grab_result", "ok": answer == "ok", KIND_FIELD[kind]: drop_id}
        if answer != "ok":
            result["reason"] = answer
        result.update(extra)
        return result

    async def grab(
        self, who: Principal, drop_id: str, kind: str, req_id: str, ip: str, rtt_ms: int | None = None
    ) -> dict[str, Any]:
        """One grab, answered as the contract's ``grab_result`` (without ``req_id``)."""
        # A refusal by the anti-fraud rules still goes through the script, which answers a retry of
        # an earlier grab (one that won, say) with its first answer, and remembers this one.
        rule = "blocklist" if who.user in self.blocklist else None
        seen = self._seen.get(drop_id)
        now = self._clock.now_ms()
        if seen is not None and self._is_subscribed(seen.room):  # this view is kept current by broadcasts
            if seen.kind != kind:
                return self._answer(kind, drop_id, "not_found")
            # near the end, as near the start, Redis's clock decides
            status = drop_status(False, seen.starts, seen.ends + 1000, seen.left, now)
            hopeless = "ended" if "ended" in (seen.status, status) else "sold_out" if seen.status == "sold_out" else None
            if hopeless is not None and who.user not in await self._holders(drop_id, seen):
                self.local_answers += 1
                return self._answer(kind, drop_id, hopeless)
            if now < seen.starts - 1000:  # clearly early; near the start Redis's clock decides
                self.local_answers += 1
                return self._answer(kind, drop_id, "not_started")
            if rule is None and self._s.grab_too_soon and too_soon(now, seen.starts, rtt_ms):
                rule = "too_soon"
        if not ID_RE.match(drop_id):
            return self._answer(kind, drop_id, "not_found")
        refusal = "blocked" if rule else ""
        answer, order_id, expires = await self.batcher.submit((drop_id, kind), GrabRequest(who.user, req_id, ip, refusal))
        if rule and answer == "blocked":
            self.fraud[rule] = self.fraud.get(rule, 0) + 1
        extra: dict[str, Any] = {}
        if answer == "ok" and kind == "sale":
            extra = {"order_id": order_id, "expires_at_ms": expires}
        elif answer == "ok":
            await self._redis.sadd(self._keys.user_coupons(who.user), drop_id)
        return self._answer(kind, drop_id, answer, **extra)

    async def _run_batch(self, target: tuple[str, str], batch: list[GrabRequest]) -> list[tuple[str, str, int]]:
        drop_id, kind = target
        dk = self._keys.drop(drop_id)
        keys = [dk.meta, dk.buyers, dk.answers, dk.orders, dk.deadlines, self._keys.orders_stream, dk.winners,
                dk.order_uv, dk.stats]
        args: list[Any] = [self._s.grab_user_rate, self._s.grab_user_burst, self._s.grab_ip_rate,
                           self._s.grab_ip_burst, kind]
        for g in batch:
            keys += [dk.user_rate(g.user), dk.ip_rate(g.ip)]
            args += [g.user, g.req_id, g.refusal]
        res = await self._scripts.seckill_grab(keys=keys, args=args)
        return [(r[0], r[1], int(r[2])) for r in res]

    # -- orders ------------------------------------------------------------------------

    @staticmethod
    def _split_order(order_id: str) -> str:
        drop_id, _, n = order_id.rpartition(".")
        if not drop_id or not n.isdigit() or not ID_RE.match(drop_id) or len(n) > 19:
            raise NotFound(f"order {order_id!r} not found")
        return drop_id

    def _order_keys(self, dk: DropKeys) -> list[str]:
        return [dk.meta, dk.buyers, dk.orders, dk.deadlines, self._keys.orders_stream]

    @staticmethod
    def _order_public(o: dict[str, Any]) -> dict[str, Any]:
        body = {k: o[k] for k in ("order_id", "sale_id", "room_id", "user", "status", "price_cents", "qty", "expires_at_ms")}
        body["created_at_ms"] = o["created_ms"]
        if "paid_ms" in o:
            body["paid_at_ms"] = o["paid_ms"]
        if "closed_ms" in o:
            body["closed_at_ms"] = o["closed_ms"]
        return body

    async def get_order(self, order_id: str, who: Principal) -> dict[str, Any]:
        dk = self._keys.drop(self._split_order(order_id))
        raw = await self._redis.hget(dk.orders, order_id)
        if raw is None:
            raise NotFound(f"order {order_id!r} not found")
        o = json.loads(raw)
        if who.user != o["user"] and not who.is_admin:
            room = await self._rooms.find(o["room_id"])
            if room is None or not who.may_run(room.host):
                raise Forbidden("only the buyer, the room's host or an admin may read this order")
        return self._order_public(o)

    async def pay(self, order_id: str, who: Principal) -> dict[str, Any]:
        if not who.is_admin:
            raise Forbidden("orders are paid by the payment system (an admin token)")
        dk = self._keys.drop(self._split_order(order_id))
        code, raw = await self._scripts.seckill_pay(keys=[*self._order_keys(dk), dk.buyer_uv, dk.stats], args=[order_id])
        if code == "not_found":
            raise NotFound(f"order {order_id!r} not found")
        if code in ("expired", "cancelled"):
            raise Conflict(f"order {order_id!r} is {code}; it cannot be paid")
        return self._order_public(json.loads(raw))

    async def cancel(self, order_id: str, who: Principal) -> dict[str, Any]:
        dk = self._keys.drop(self._split_order(order_id))
        raw = await self._redis.hget(dk.orders, order_id)
        if raw is None:
            raise NotFound(f"order {order_id!r} not found")
        if json.loads(raw)["user"] != who.user and not who.is_admin:
            raise Forbidden("only the buyer or an admin may cancel this order")
        code, raw = await self._scripts.seckill_cancel(keys=self._order_keys(dk), args=[order_id])
        if code in ("paid", "expired"):
            raise Conflict(f"order {order_id!r} is {code}; it cannot be cancelled")
        return self._order_public(json.loads(raw))

    async def my_coupons(self, who: Principal) -> list[dict[str, Any]]:
        ids = sorted(await self._redis.smembers(self._keys.user_coupons(who.user)))
        now = self._clock.now_ms()
        out = []
        for drop_id in ids:
            drop = await self._load(drop_id)
            if drop is not None:
                out.append({**drop.public(now), "won": int(await self._redis.hget(self._keys.drop(drop_id).buyers, who.user) or 0)})
        return out

    # -- lifecycle ------------------------------------------------------------------------

    def is_blocked(self, user: str) -> bool:
        return user in self.blocklist

    async def announce(self, drop_id: str, action: str = "announce") -> tuple[str, int]:
        """Publish the drop's state (``end``: end it now).  Returns (status, pending)."""
        res = await self._scripts.seckill_announce(keys=[self._keys.drop(drop_id).meta], args=[action])
        return res[0], int(res[2])

    async def end_room(self, room_id: str) -> None:
        """The room ended: its open drops end (pending orders stay payable until their deadline)."""
        key = self._keys.room(room_id).drops
        for drop_id in await self._redis.smembers(key):
            await self.announce(drop_id, "end")
            await self._redis.srem(key, drop_id)

    # -- blocklist ---------------------------------------------------------------------------

    async def load_blocklist(self) -> None:
        self.blocklist = frozenset(await self._redis.smembers(self._keys.blocklist))

    async def change_blocklist(self, body: dict[str, Any]) -> list[str]:
        add = body.get("add", [])
        remove = body.get("remove", [])
        if not isinstance(add, list) or not isinstance(remove, list) or len(add) + len(remove) > 10_000:
            raise Invalid("add", "'add' and 'remove' must be lists of user ids")
        add = [check_id(u, "add") for u in add]
        remove = [check_id(u, "remove") for u in remove]
        pipe = self._redis.pipeline(transaction=True)
        if add:
            pipe.sadd(self._keys.blocklist, *add)
        if remove:
            pipe.srem(self._keys.blocklist, *remove)
        await pipe.execute()
        from ..wire import encode_msgpack

        await self._redis.publish(self._keys.nodes_channel, encode_msgpack({"type": "_blocklist"}))
        return sorted(await self._redis.smembers(self._keys.blocklist))

