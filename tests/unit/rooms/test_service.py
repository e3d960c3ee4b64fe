"""The pure helpers of the room service: field checks, Room and Product."""

from __future__ import annotations

import json
from typing import Any

import pytest

from liveserver.errors import ApiError, Invalid
from liveserver.rooms.service import (
    MAX_PRICE_CENTS,
    MAX_TITLE,
    Product,
    Room,
    check_id,
    check_int,
    check_product,
    check_title,
)


def _invalid(fn: Any, *args: Any) -> Invalid:
    with pytest.raises(Invalid) as info:
        fn(*args)
    err = info.value
    assert err.status == 422
    assert err.code == "invalid"
    assert err.body()["error"]["field"] == err.field  # type: ignore[index]
    return err


def test_invalid_is_api_error() -> None:
    assert issubclass(Invalid, ApiError)


# --------------------------------------------------------------------------- check_title


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Spring sale", "Spring sale"), ("  padded  ", "padded"), ("直播间🎉", "直播间🎉"), ("x" * MAX_TITLE, "x" * MAX_TITLE)],
)
def test_check_title_accepts(value: str, expected: str) -> None:
    assert check_title(value) == expected


def test_check_title_length_counted_after_strip() -> None:
    assert check_title("  " + "t" * MAX_TITLE + "  ") == "t" * MAX_TITLE


@pytest.mark.parametrize("value", ["", " ", "   ", "\t\n", "\u3000", None, 5, ["t"], b"title"])
def test_check_title_rejects_empty_or_non_string(value: Any) -> None:
    assert _invalid(check_title, value).field == "title"


def test_check_title_rejects_101_chars() -> None:
    assert MAX_TITLE == 100
    err = _invalid(check_title, "x" * (MAX_TITLE + 1))
    assert err.field == "title"
    assert "100" in err.message


def test_check_title_custom_field() -> None:
    assert _invalid(check_title, "  ", "name").field == "name"


# --------------------------------------------------------------------------- check_id


@pytest.mark.parametrize("value", ["a", "room-1", "A_b.c-9", "z" * 64])
def test_check_id_accepts(value: str) -> None:
    assert check_id(value, "room_id") == value


@pytest.mark.parametrize("value", ["", "a b", "z" * 65, "房间", "a/b", "a{b", None, 5, True])
def test_check_id_rejects(value: Any) -> None:
    assert _invalid(check_id, value, "room_id").field == "room_id"


# --------------------------------------------------------------------------- check_int


@pytest.mark.parametrize("value", [0, 1, 50, 100])
def test_check_int_accepts_bounds(value: int) -> None:
    assert check_int(value, "n", 0, 100) == value


@pytest.mark.parametrize("value", [True, False, -1, 101, 1.0, "5", None])
def test_check_int_rejects(value: Any) -> None:
    err = _invalid(check_int, value, "seconds", 0, 100)
    assert err.field == "seconds"


# --------------------------------------------------------------------------- check_product


def test_check_product_accepts() -> None:
    p = check_product("sku-1", {"title": "  Lipstick 口红  ", "price_cents": 1999})
    assert p == Product("sku-1", "Lipstick 口红", 1999)


@pytest.mark.parametrize("price", [0, MAX_PRICE_CENTS])
def test_check_product_price_bounds(price: int) -> None:
    assert check_product("p", {"title": "t", "price_cents": price}).price_cents == price


@pytest.mark.parametrize("price", [-1, MAX_PRICE_CENTS + 1, True, 9.99, "100", None])
def test_check_product_bad_price(price: Any) -> None:
    body: dict[str, Any] = {"title": "t"}
    if price is not None:
        body["price_cents"] = price
    assert _invalid(check_product, "p", body).field == "price_cents"


@pytest.mark.parametrize("title", [None, "", "   ", "x" * 101, 3])
def test_check_product_bad_title(title: Any) -> None:
    body: dict[str, Any] = {"price_cents": 100}
    if title is not None:
        body["title"] = title
    assert _invalid(check_product, "p", body).field == "title"


@pytest.mark.parametrize("pid", ["", "has space", "x" * 65, "商品"])
def test_check_product_bad_id(pid: str) -> None:
    assert _invalid(check_product, pid, {"title": "t", "price_cents": 1}).field == "product_id"


def test_check_product_id_checked_first() -> None:
    assert _invalid(check_product, "bad id", {}).field == "product_id"


# --------------------------------------------------------------------------- Product


def test_product_public_and_json_round_trip() -> None:
    p = Product("sku-9", "保温杯 ☕", 4900)
    body = p.public()
    assert body == {"product_id": "sku-9", "title": "保温杯 ☕", "price_cents": 4900}
    assert Product.from_json(json.dumps(body, ensure_ascii=False)) == p


def test_product_from_json_coerces_price_to_int() -> None:
    p = Product.from_json('{"product_id": "a", "title": "b", "price_cents": "12"}')
    assert p.price_cents == 12 and isinstance(p.price_cents, int)


# --------------------------------------------------------------------------- Room


MINIMAL = {"room_id": "r1", "title": "Show", "host": "h1", "status": "scheduled", "created_ms": "1700000000000"}


def test_room_from_minimal_hash() -> None:
    room = Room.from_hash(dict(MINIMAL))
    assert room == Room("r1", "Show", "h1", "scheduled", created_ms=1_700_000_000_000)
    assert room.started_ms is None and room.ended_ms is None and room.pinned is None


def test_room_public_without_optional_fields() -> None:
    body = Room.from_hash(dict(MINIMAL)).public(online=3)
    assert body == {
        "room_id": "r1",
        "title": "Show",
        "host": "h1",
        "status": "scheduled",
        "online": 3,
        "created_at_ms": 1_700_000_000_000,
    }
    for key in ("started_at_ms", "ended_at_ms", "pinned_product_id"):
        assert key not in body


def test_room_empty_optional_fields_are_unset() -> None:
    room = Room.from_hash({**MINIMAL, "started_ms": "", "ended_ms": "", "pinned": ""})
    assert room.started_ms is None and room.ended_ms is None and room.pinned is None
    assert set(room.public(0)) == {"room_id", "title", "host", "status", "online", "created_at_ms"}


def test_room_missing_created_ms_is_zero() -> None:
    h = {k: v for k, v in MINIMAL.items() if k != "created_ms"}
    assert Room.from_hash(h).created_ms == 0


def test_room_full_hash() -> None:
    h = {**MINIMAL, "status": "ended", "started_ms": "1700000001000", "ended_ms": "1700000002000", "pinned": "sku-1"}
    room = Room.from_hash(h)
    assert room.started_ms == 1_700_000_001_000
    assert room.ended_ms == 1_700_000_002_000
    assert room.pinned == "sku-1"
    body = room.public(online=0)
    assert body["started_at_ms"] == 1_700_000_001_000
    assert body["ended_at_ms"] == 1_700_000_002_000
    assert body["pinned_product_id"] == "sku-1"
    assert body["online"] == 0
    assert body["status"] == "ended"


def test_room_only_started() -> None:
    body = Room.from_hash({**MINIMAL, "status": "live", "started_ms": "5"}).public(online=7)
    assert body["started_at_ms"] == 5
    assert "ended_at_ms" not in body
    assert "pinned_product_id" not in body
