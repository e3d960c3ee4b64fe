"""Orders of flash sales, and the coupons a user won.

An order is made by the grab that wins (``seckill_grab.lua``, from ``grabs.py``);
its state changes only in ``seckill_pay.lua`` and ``seckill_cancel.lua`` (and
``seckill_expire.lua`` at its payment deadline, run by the scheduler), in the
drop's slot.  Order ids are ``<drop id>.<n>``: the drop, and so the slot, is
read from the id.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..errors import Conflict, Forbidden, NotFound
from ..redisio.keyspace import DropKeys
from ..redisio.store import Store
from ..rooms.service import RoomService
from ..wire import ID_RE
from .drop import Drop

__all__ = ["Orders"]


class Orders:
    """Reads, pays and cancels orders; ``load_drop``: a drop by its id (None: no such drop)."""

    def __init__(self, store: Store, rooms: RoomService, clock: Clock,
                 load_drop: Callable[[str], Awaitable[Drop | None]]) -> None:
        self._redis, self._scripts, self._keys = store
        self._rooms = rooms
        self._clock = clock
        self._load_drop = load_drop

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
            drop = await self._load_drop(drop_id)
            if drop is not None:
                out.append({**drop.public(now), "won": int(await self._redis.hget(self._keys.drop(drop_id).buyers, who.user) or 0)})
        return out
