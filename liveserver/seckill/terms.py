"""A drop's terms and a start window, read from a create body (pure: no I/O, the time passed in).

Flash sales, coupons and red packets take their start the same way:
``countdown_s`` from now or ``starts_at_ms``, never both (``parse_window``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Invalid
from ..rooms.service import MAX_PRICE_CENTS, check_id, check_int

__all__ = [
    "KIND_FIELD",
    "MAX_COUNTDOWN_S",
    "MAX_DURATION_S",
    "MAX_STOCK",
    "DropTerms",
    "Window",
    "parse_drop_id",
    "parse_terms",
    "parse_window",
]

MAX_STOCK = 1_000_000
MAX_COUNTDOWN_S = 7 * 24 * 3600
MAX_DURATION_S = 7 * 24 * 3600
KIND_FIELD = {"sale": "sale_id", "coupon": "coupon_id"}


@dataclass(frozen=True, slots=True)
class Window:
    """When a drop or a red packet starts: at ``starts_ms``, or (``starts_ms`` 0) ``countdown_ms``
    after its create script runs, on Redis's clock."""

    starts_ms: int
    countdown_ms: int

    def starts_at(self, now_ms: int) -> int:
        """The start as this node estimates it at ``now_ms`` (the script fixes it)."""
        return self.starts_ms or now_ms + self.countdown_ms


def parse_window(body: dict[str, Any], now_ms: int) -> Window:
    """``countdown_s`` (0 to a week) or ``starts_at_ms`` (from a minute ago to a week ahead)."""
    countdown, starts_at = body.get("countdown_s"), body.get("starts_at_ms")
    if countdown is not None and starts_at is not None:
        raise Invalid("starts_at_ms", "give countdown_s or starts_at_ms, not both")
    countdown_ms = 1000 * check_int(0 if countdown is None else countdown, "countdown_s", 0, MAX_COUNTDOWN_S)
    starts_ms = 0
    if starts_at is not None:
        starts_ms = check_int(starts_at, "starts_at_ms", now_ms - 60_000, now_ms + MAX_COUNTDOWN_S * 1000)
    return Window(starts_ms, countdown_ms)


@dataclass(frozen=True, slots=True)
class DropTerms:
    """What a create body asks of a flash sale or a coupon, checked."""

    stock: int
    per_user: int
    duration_ms: int
    price_cents: int  # a coupon's is the product's list price
    discount_cents: int  # coupons; 0 for sales
    pay_ms: int  # sales' payment timeout; 0 for coupons
    window: Window


def parse_drop_id(body: dict[str, Any], kind: str) -> str | None:
    """The client's id for the drop (``sale_id`` / ``coupon_id``), or None: the caller makes one."""
    id_field = KIND_FIELD[kind]
    drop_id = body.get(id_field)
    if drop_id is None:
        return None
    drop_id = check_id(drop_id, id_field)
    if "." in drop_id:
        raise Invalid(id_field, f"'{id_field}' must not contain '.'")
    return drop_id


def parse_terms(body: dict[str, Any], kind: str, list_price_cents: int, now_ms: int) -> DropTerms:
    """The terms of a ``kind`` drop of a product listed at ``list_price_cents``."""
    stock = check_int(body.get("stock"), "stock", 1, MAX_STOCK)
    per_user = check_int(body.get("per_user_limit", 1), "per_user_limit", 1, stock)
    duration_s = check_int(body.get("duration_s", 300), "duration_s", 1, MAX_DURATION_S)
    if kind == "sale":
        price = check_int(body.get("price_cents"), "price_cents", 0, MAX_PRICE_CENTS)
        discount = 0
        pay_s = check_int(body.get("pay_timeout_s", 900), "pay_timeout_s", 1, 24 * 3600)
    else:
        price = list_price_cents
        discount = check_int(body.get("discount_cents"), "discount_cents", 1, MAX_PRICE_CENTS)
        pay_s = 0
    return DropTerms(stock, per_user, duration_s * 1000, price, discount, pay_s * 1000, parse_window(body, now_ms))
