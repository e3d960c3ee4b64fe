"""A drop as its meta hash holds it, and the rules the node applies to it without Redis (pure).

``drop_status`` is the status rule of ``_seckill_lib.lua`` and ``Drop.message``
the body its ``announce`` publishes: the node answers reads and hopeless grabs
with them, so each is tested against the Lua (tests/integration/test_seckill_lua_mirror.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .terms import KIND_FIELD

__all__ = ["Drop", "drop_status", "too_soon"]


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

