"""The contract's ``metrics`` body of a room, built from its readings (pure: no Redis, no I/O).

:func:`build_body` lays out what :class:`.readings.RoomReadings` holds with the
room's drops at a given ``now_ms``: the counts and :mod:`.ratios`, the product
table, the per-minute series and their windows, the markers on the series,
the drops and the red packets.  ``alerts`` are added by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ratios import ratios, windows
from .readings import ProductFunnel, RoomReadings

if TYPE_CHECKING:
    from ..seckill.drop import Drop

__all__ = ["ENDED_DROPS_SHOWN", "SERIES", "SERIES_MINUTES", "build_body", "to_minute"]

SERIES = ("online", "enter", "leave", "gmv_cents", "order_count", "danmaku")
SERIES_MINUTES = 240  # the series cover the last four hours of the room at most
ENDED_DROPS_SHOWN = 20  # the body's ``drops``: those not ended, and the last ones that ended


def to_minute(ms: int) -> int:
    """The epoch minute of an epoch ms."""
    return ms // 60_000


def build_body(readings: RoomReadings, drops: list[Drop], *, online: int, now_ms: int) -> dict[str, Any]:
    """The body without ``alerts``, for ``online`` viewers and the room's ``drops`` at ``now_ms``."""
    r, now = readings, now_ms
    sales = [d for d in drops if d.kind == "sale"]
    stats = r.sale_stats
    started = r.started_ms if r.started_ms is not None else now
    first = max(to_minute(started), to_minute(now) - SERIES_MINUTES + 1)
    minutes = range(first, to_minute(now) + 1)
    series = {name: [h.get(m, 0) for m in minutes] for name, h in r.room_series.items()}
    series["order_count"] = [sum(st.get(f"o:{m}", 0) for st in stats.values()) for m in minutes]
    series["gmv_cents"] = [sum(st.get(f"g:{m}", 0) for st in stats.values()) for m in minutes]
    series = {name: series[name] for name in SERIES}
    gmv = sum(d.paid * d.price for d in sales)
    last_paid = max((st.get("last_paid", 0) for st in stats.values()), default=0)
    c = {"uv": r.uv, "pv": r.pv, "watch_ms": r.watch_ms, "exposure_uv": r.exposure_uv, "click_uv": r.click_uv,
         "buyer_uv": r.buyer_uv, "gmv_cents": gmv}
    body: dict[str, Any] = {
        "room_id": r.room_id, "ts_ms": now, "room_status": r.room_status, "online": online,
        "peak_online": max(r.peak_online, online), "uv": r.uv, "pv": r.pv, "likes": r.likes,
        "danmaku": r.danmaku, "exposure_uv": r.exposure_uv, "click_uv": r.click_uv, "cart_uv": r.cart_uv,
        "order_count": sum(d.orders for d in sales), "order_uv": r.order_uv,
        "paid_count": sum(d.paid for d in sales), "buyer_uv": r.buyer_uv, "gmv_cents": gmv,
        "last_paid_at_ms": last_paid or None, "red_packet_claims": r.red_packet_claims,
        "red_packet_cents": r.red_packet_cents, "danmaku_thinned": r.danmaku_thinned,
        "series_start_minute": first, **ratios(c),
    }
    body["products"] = _tabulate_products(r.products, r.catalog, sales, now)
    body["series"] = series
    body["windows"] = windows(series)
    body["markers"] = _place_markers(r.logged_markers, drops, first * 60_000, now)
    ended = [d for d in drops if d.status(now) == "ended"]
    shown = [d for d in drops if d.status(now) != "ended" or d in ended[-ENDED_DROPS_SHOWN:]]
    body["drops"] = [{"kind": d.kind, **d.public(now)} for d in shown]
    body["red_packets"] = r.red_packets[-ENDED_DROPS_SHOWN:]
    body["video"] = _video(r)
    return body


def _video(r: RoomReadings) -> dict[str, Any]:
    """The ``video`` block: the media node's status (none while no camera is live), and the HLS
    viewers counted on every node."""
    status = r.video or {}
    program = status.get("program") or {}
    return {
        "cameras": list(status.get("cameras") or []),
        "program": {"layout": program.get("layout", "single"), "main": program.get("main"),
                    "inset": program.get("inset")},
        "whep_viewers": int(status.get("whep_viewers") or 0),
        "hls_viewers": r.hls_viewers,
    }


def _mark_sales(drops: list[Drop], now: int) -> list[dict[str, Any]]:
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


def _place_markers(logged: list[dict[str, Any]], drops: list[Drop], since_ms: int, now: int) -> list[dict[str, Any]]:
    """Events on the series, oldest first: pins and red packets (logged), and the drops'
    starts, sell-outs and ends.  Each has ``kind``, ``at_ms`` and ``minute``."""
    events = []
    for logged_event in logged:
        event = dict(logged_event)  # a copy: the readings stay as read
        event["at_ms"] = event.pop("at")
        events.append(event)
    events += _mark_sales(drops, now)
    marks = [e for e in events if since_ms <= e["at_ms"] <= now]
    for e in marks:
        e["minute"] = to_minute(e["at_ms"])
    return sorted(marks, key=lambda e: (e["at_ms"], e["kind"]))


def _tabulate_products(products: dict[str, ProductFunnel], catalog: dict[str, dict[str, Any]], sales: list[Drop],
                       now: int) -> list[dict[str, Any]]:
    """A row per product: its funnel, its sales' orders, payments and GMV, its catalog title and
    price, and the stock left in its sales on now or counting down."""
    out = []
    for p, funnel in products.items():
        mine = [d for d in sales if d.product == p]
        row = {"product_id": p, "exposure_uv": funnel.exposure_uv, "click_uv": funnel.click_uv,
               "order_count": sum(d.orders for d in mine), "paid_count": sum(d.paid for d in mine),
               "gmv_cents": sum(d.paid * d.price for d in mine)}
        if p in catalog:
            row.update(title=catalog[p].get("title"), price_cents=catalog[p].get("price_cents"))
        live = [d for d in mine if d.status(now) in ("live", "countdown")]
        if live:
            row["stock_left"] = sum(d.left for d in live)
        out.append(row)
    return out
