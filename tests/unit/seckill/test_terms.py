"""A drop's terms and the start window, read from create bodies (pure: the time is passed in)."""

from __future__ import annotations

from typing import Any

import pytest

from liveserver.errors import Invalid
from liveserver.seckill.terms import DropTerms, Window, parse_drop_id, parse_terms, parse_window

NOW = 1_700_000_000_000
WEEK_S = 7 * 24 * 3600


def _invalid(call: Any, *args: Any) -> Invalid:
    with pytest.raises(Invalid) as e:
        call(*args)
    return e.value


def test_window_defaults_to_now() -> None:
    assert parse_window({}, NOW) == Window(0, 0)
    assert Window(0, 0).starts_at(NOW) == NOW


def test_window_by_countdown() -> None:
    w = parse_window({"countdown_s": 30}, NOW)
    assert w == Window(0, 30_000)
    assert w.starts_at(NOW) == NOW + 30_000
    assert parse_window({"countdown_s": WEEK_S}, NOW).countdown_ms == WEEK_S * 1000


def test_window_at_a_time_is_that_time_whenever_it_is_read() -> None:
    w = parse_window({"starts_at_ms": NOW + 5000}, NOW)
    assert w == Window(NOW + 5000, 0)
    assert w.starts_at(NOW + 99_999) == NOW + 5000


@pytest.mark.parametrize("starts_at", [NOW - 60_000, NOW + WEEK_S * 1000])
def test_window_bounds_are_inclusive(starts_at: int) -> None:
    assert parse_window({"starts_at_ms": starts_at}, NOW).starts_ms == starts_at


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"countdown_s": 5, "starts_at_ms": NOW}, "starts_at_ms", "give countdown_s or starts_at_ms, not both"),
        ({"countdown_s": -1}, "countdown_s", f"'countdown_s' must be an integer from 0 to {WEEK_S}"),
        ({"countdown_s": WEEK_S + 1}, "countdown_s", f"'countdown_s' must be an integer from 0 to {WEEK_S}"),
        ({"countdown_s": ""}, "countdown_s", f"'countdown_s' must be an integer from 0 to {WEEK_S}"),
        ({"countdown_s": True}, "countdown_s", f"'countdown_s' must be an integer from 0 to {WEEK_S}"),
        ({"starts_at_ms": NOW - 60_001}, "starts_at_ms",
         f"'starts_at_ms' must be an integer from {NOW - 60_000} to {NOW + WEEK_S * 1000}"),
        ({"starts_at_ms": NOW + WEEK_S * 1000 + 1}, "starts_at_ms",
         f"'starts_at_ms' must be an integer from {NOW - 60_000} to {NOW + WEEK_S * 1000}"),
        ({"starts_at_ms": 1.5}, "starts_at_ms",
         f"'starts_at_ms' must be an integer from {NOW - 60_000} to {NOW + WEEK_S * 1000}"),
    ],
)
def test_window_refusals(body: dict[str, Any], field: str, message: str) -> None:
    e = _invalid(parse_window, body, NOW)
    assert (e.field, e.message, e.status) == (field, message, 422)


def test_sale_terms_with_defaults() -> None:
    terms = parse_terms({"stock": 5, "price_cents": 9900}, "sale", 12_000, NOW)
    assert terms == DropTerms(stock=5, per_user=1, duration_ms=300_000, price_cents=9900, discount_cents=0,
                              pay_ms=900_000, window=Window(0, 0))


def test_coupon_terms_take_the_products_price() -> None:
    body = {"stock": 3, "discount_cents": 500, "per_user_limit": 3, "duration_s": 60, "countdown_s": 10,
            "price_cents": 1, "pay_timeout_s": 1}  # a coupon's price and payment timeout are not read
    assert parse_terms(body, "coupon", 12_000, NOW) == DropTerms(3, 3, 60_000, 12_000, 500, 0, Window(0, 10_000))


def test_terms_are_frozen() -> None:
    terms = parse_terms({"stock": 1, "price_cents": 0}, "sale", 1, NOW)
    with pytest.raises(AttributeError):
        terms.stock = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "body", "field", "message"),
    [
        ("sale", {"price_cents": 1}, "stock", "'stock' must be an integer from 1 to 1000000"),
        ("sale", {"stock": 1_000_001, "price_cents": 1}, "stock", "'stock' must be an integer from 1 to 1000000"),
        ("sale", {"stock": 2, "per_user_limit": 3, "price_cents": 1}, "per_user_limit",
         "'per_user_limit' must be an integer from 1 to 2"),
        ("sale", {"stock": 2, "duration_s": 0, "price_cents": 1}, "duration_s",
         f"'duration_s' must be an integer from 1 to {WEEK_S}"),
        ("sale", {"stock": 2}, "price_cents", "'price_cents' must be an integer from 0 to 100000000000"),
        ("sale", {"stock": 2, "price_cents": 1, "pay_timeout_s": 86_401}, "pay_timeout_s",
         "'pay_timeout_s' must be an integer from 1 to 86400"),
        ("coupon", {"stock": 2}, "discount_cents", "'discount_cents' must be an integer from 1 to 100000000000"),
        ("coupon", {"stock": 2, "discount_cents": 0}, "discount_cents",
         "'discount_cents' must be an integer from 1 to 100000000000"),
        # the window is read last: a bad stock is named before a bad window
        ("sale", {"stock": 0, "price_cents": 1, "countdown_s": -1}, "stock", "'stock' must be an integer from 1 to 1000000"),
        ("sale", {"stock": 1, "price_cents": 1, "countdown_s": 1, "starts_at_ms": NOW}, "starts_at_ms",
         "give countdown_s or starts_at_ms, not both"),
    ],
)
def test_terms_refusals(kind: str, body: dict[str, Any], field: str, message: str) -> None:
    e = _invalid(parse_terms, body, kind, 100, NOW)
    assert (e.field, e.message) == (field, message)


def test_drop_id() -> None:
    assert parse_drop_id({}, "sale") is None
    assert parse_drop_id({"sale_id": "s-1"}, "sale") == "s-1"
    assert parse_drop_id({"sale_id": "s-1"}, "coupon") is None  # each kind reads its own field
    assert parse_drop_id({"coupon_id": "c_2"}, "coupon") == "c_2"


@pytest.mark.parametrize(
    ("kind", "body", "field", "message"),
    [
        ("sale", {"sale_id": "a.b"}, "sale_id", "'sale_id' must not contain '.'"),
        ("coupon", {"coupon_id": "x.1"}, "coupon_id", "'coupon_id' must not contain '.'"),
        ("sale", {"sale_id": ""}, "sale_id", "'sale_id' must be 1-64 of [A-Za-z0-9_.-]"),
        ("coupon", {"coupon_id": 7}, "coupon_id", "'coupon_id' must be 1-64 of [A-Za-z0-9_.-]"),
    ],
)
def test_drop_id_refusals(kind: str, body: dict[str, Any], field: str, message: str) -> None:
    e = _invalid(parse_drop_id, body, kind)
    assert (e.field, e.message) == (field, message)
