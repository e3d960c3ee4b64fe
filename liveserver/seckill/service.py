"""Flash sales and coupons ("drops") on Redis Lua atomic stock: the drop catalogue.

Every decision about stock, limits, idempotency and order state is made by a
``seckill_*.lua`` script in the drop's slot (``{d:<id>}``).  This module
creates drops from their checked terms (``terms.py``), reads them, publishes
how they stand, ends them with their room, and keeps the blocklist.  The grab
path (``grabs.py``: the node-local view of each drop, kept from its
broadcasts, and the anti-fraud rules that need no shared state) and the orders
(``orders.py``) are its attributes ``grabs`` and ``orders``.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound
from ..redisio.keyspace import RoomKeys
from ..redisio.store import Store
from ..rooms.service import RoomService, check_id
from ..settings import Settings
from ..wire import ID_RE
from .drop import Drop
from .grabs import Grabs
from .orders import Orders
from .terms import KIND_FIELD, parse_drop_id, parse_terms

__all__ = ["SeckillService"]

SETTLED_CACHE = 10_000  # settled drops kept in memory for the metrics (then the cache starts over)


class SeckillService:
    """The drop catalogue; the grab path is ``grabs``, the orders are ``orders``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        rooms: RoomService,
        clock: Clock,
        is_subscribed: Any,
    ) -> None:
        self._redis, self._scripts, self._keys = store
        self._rooms = rooms
        self._clock = clock
        self._settled: dict[str, Drop] = {}  # ended drops with nothing left to pay: they never change
        self.blocklist: frozenset[str] = frozenset()
        self.grabs = Grabs(store, settings, clock, is_subscribed, self.is_blocked)
        self.orders = Orders(store, rooms, clock, self._load)

    # -- creating ----------------------------------------------------------------

    async def create(self, room_id: str, who: Principal, body: dict[str, Any], kind: str) -> dict[str, Any]:
        room = await self._rooms.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        id_field = KIND_FIELD[kind]
        drop_id = parse_drop_id(body, kind)
        if drop_id is None:
            drop_id = secrets.token_hex(6)
        product_id = check_id(body.get("product_id"), "product_id")
        product = await self._rooms.product(room_id, product_id)
        if product is None:
            raise NotFound(f"product {product_id!r} not found in room {room_id!r}")
        terms = parse_terms(body, kind, product.price_cents, self._clock.now_ms())
        dk = self._keys.drop(drop_id)
        rk = self._keys.room(room_id)
        # Bookkeeping in other slots first, so that a drop never exists unscheduled or unswept;
        # the schedule's times are estimates until the script fixes them (an early entry just
        # comes back: the scheduler claims on Redis's clock and finishes only what is due).
        starts_guess = terms.window.starts_at(self._clock.now_ms())
        await self._book(rk, drop_id, starts_guess, starts_guess + terms.duration_ms)
        _code, starts, ends = await self._scripts.seckill_create(
            keys=[dk.meta],
            args=[kind, drop_id, room_id, product_id, terms.price_cents, terms.discount_cents, terms.stock,
                  terms.per_user, terms.window.starts_ms, terms.window.countdown_ms, terms.duration_ms,
                  terms.pay_ms, rk.channel, product.title, product.price_cents],
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

