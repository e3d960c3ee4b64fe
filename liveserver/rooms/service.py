"""Rooms: create, start, end, read; products and the pinned product; bans.

State lives in Redis (``{r:<room>}`` keys); every state change is one Lua
script or one command, and every change viewers must see is published to the
room's channel.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..auth import Principal, Role
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..redisio.store import Store
from ..wire import ID_RE

__all__ = [
    "MAX_PRICE_CENTS", "Product", "Room", "RoomService", "check_id", "check_int", "check_product", "check_title",
]

#: publish a message to every node holding viewers of a room (the broker's ``publish``)
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]

MAX_TITLE = 100
MAX_PRICE_CENTS = 10**11  # a billion in currency units: far beyond any product
MAX_BAN_S = 30 * 24 * 3600
_BLANK_RE = re.compile(r"^\s*$")


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    title: str
    host: str
    status: str
    created_ms: int
    started_ms: int | None = None
    ended_ms: int | None = None
    pinned: str | None = None

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Room:
        def opt_int(name: str) -> int | None:
            return int(h[name]) if h.get(name) else None

        return cls(
            room_id=h["room_id"],
            title=h["title"],
            host=h["host"],
            status=h["status"],
            created_ms=int(h.get("created_ms") or 0),
            started_ms=opt_int("started_ms"),
            ended_ms=opt_int("ended_ms"),
            pinned=h.get("pinned") or None,
        )

    def public(self, online: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "room_id": self.room_id,
            "title": self.title,
            "host": self.host,
            "status": self.status,
            "online": online,
            "created_at_ms": self.created_ms,
        }
        if self.started_ms is not None:
            body["started_at_ms"] = self.started_ms
        if self.ended_ms is not None:
            body["ended_at_ms"] = self.ended_ms
        if self.pinned is not None:
            body["pinned_product_id"] = self.pinned
        return body


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    price_cents: int

    def public(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "title": self.title, "price_cents": self.price_cents}

    @classmethod
    def from_json(cls, raw: str) -> Product:
        d = json.loads(raw)
        return cls(d["product_id"], d["title"], int(d["price_cents"]))


def check_title(value: Any, field: str = "title") -> str:
    if not isinstance(value, str) or _BLANK_RE.match(value):
        raise Invalid(field, f"'{field}' must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_TITLE:
        raise Invalid(field, f"'{field}' must be at most {MAX_TITLE} characters")
    return value


def check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise Invalid(field, f"'{field}' must be 1-64 of [A-Za-z0-9_.-]")
    return value


def check_int(value: Any, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise Invalid(field, f"'{field}' must be an integer from {lo} to {hi}")
    return value


def check_product(product_id: str, body: dict[str, Any]) -> Product:
    return Product(
        product_id=check_id(product_id, "product_id"),
        title=check_title(body.get("title")),
        price_cents=check_int(body.get("price_cents"), "price_cents", 0, MAX_PRICE_CENTS),
    )


class RoomService:
    """Room operations.  ``publish(room, msg)`` sends a room event to every node."""

    def __init__(self, store: Store, publish: Publish, ended_ttl_s: int) -> None:
        self._redis, self._scripts, self._keys = store
        self._publish = publish
        self._ended_ttl_s = ended_ttl_s
        #: called with the room id after a room ends (its drops end too)
        self.on_end: list[Any] = []

    # -- reads -----------------------------------------------------------------

    async def find(self, room_id: str) -> Room | None:
        if not ID_RE.match(room_id):
            return None
        h = await self._redis.hgetall(self._keys.room(room_id).meta)
        return Room.from_hash(h) if h else None

    async def get(self, room_id: str) -> Room:
        room = await self.find(room_id)
        if room is None:
            raise NotFound(f"room {room_id!r} not found")
        return room

    async def get_run(self, room_id: str, who: Principal) -> Room:
        """The room, if ``who`` may run it (its host or an admin)."""
        room = await self.get(room_id)
        if not who.may_run(room.host):
            raise Forbidden(f"only the host of room {room_id!r} or an admin may do this")
        return room

    async def product(self, room_id: str, product_id: str) -> Product | None:
        raw = await self._redis.hget(self._keys.room(room_id).products, product_id)
        return Product.from_json(raw) if raw else None

    async def find_for(self, room_id: str, user: str) -> tuple[Room | None, int | None]:
        """The room and when ``user``'s ban from it ends (None: not banned), in one round trip."""
        if not ID_RE.match(room_id):
            return None, None
        k = self._keys.room(room_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(k.meta)
        pipe.zscore(k.banned, user)
        meta, score = await pipe.execute()
        return (Room.from_hash(meta) if meta else None), (int(score) if score is not None else None)

    # -- lifecycle -------------------------------------------------------------

    async def create(self, who: Principal, body: dict[str, Any]) -> Room:
        if who.role not in (Role.HOST, Role.ADMIN):
            raise Forbidden("only a host or an admin may create rooms")
        title = check_title(body.get("title"))
        room_id = body.get("room_id")
        room_id = secrets.token_hex(6) if room_id is None else check_id(room_id, "room_id")
        code, status, cur_title, host, created_ms = await self._scripts.room_create(
            keys=[self._keys.room(room_id).meta], args=[room_id, title, who.user]
        )
        if int(code) == 0:
            raise Conflict(f"room {room_id!r} exists")
        return Room(room_id, cur_title, host, status, created_ms=int(created_ms))

    async def _transition(self, room_id: str, who: Principal, action: str) -> str:
        await self.get_run(room_id, who)
        k = self._keys.room(room_id)
        code, status = await self._scripts.room_transition(
            keys=k.all_static(), args=[action, self._ended_ttl_s, k.channel]
        )
        if code == "not_found":
            raise NotFound(f"room {room_id!r} not found")
        if code == "conflict":
            raise Conflict(f"room {room_id!r} is {status}; it cannot be {action}ed")
        if action == "end":  # again on a retried end, harmless: ending an ended drop changes nothing
            for hook in self.on_end:
                await hook(room_id)
        return status

    async def start(self, room_id: str, who: Principal) -> str:
        return await self._transition(room_id, who, "start")

    async def end(self, room_id: str, who: Principal) -> str:
        return await self._transition(room_id, who, "end")

    # -- products --------------------------------------------------------------

    async def put_product(self, room_id: str, product_id: str, who: Principal, body: dict[str, Any]) -> Product:
        room = await self.get_run(room_id, who)
        product = check_product(product_id, body)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        await self._redis.hset(
            self._keys.room(room_id).products, product_id, json.dumps(product.public(), ensure_ascii=False)
        )
        return product

    async def pin(self, room_id: str, product_id: str, who: Principal) -> Product:
        await self.get_run(room_id, who)
        k = self._keys.room(room_id)
        code, detail = await self._scripts.room_pin(
            keys=[k.meta, k.products, k.metric("markers")], args=[product_id, k.channel]
        )
        if code == "not_found":
            raise NotFound(f"{detail} {product_id if detail == 'product' else room_id!r} not found")
        if code == "conflict":
            raise Conflict(f"room {room_id!r} has ended")
        return Product.from_json(detail)

    # -- moderation ------------------------------------------------------------

    async def ban(self, room_id: str, who: Principal, body: dict[str, Any]) -> int:
        """Ban a user for ``seconds``: their connections close with 4003 and they cannot rejoin."""
        room = await self.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        user = check_id(body.get("user"), "user")
        seconds = check_int(body.get("seconds"), "seconds", 1, MAX_BAN_S)
        until_ms = int(await self._scripts.room_sanction(keys=[self._keys.room(room_id).banned], args=[user, seconds]))
        await self._publish(room_id, {"type": "_kick", "user": user, "reason": "banned"})
        return until_ms
