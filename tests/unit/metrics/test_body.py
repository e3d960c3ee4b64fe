"""The metrics body built from hand-made readings (pure: no Redis, no event loop)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from liveserver.metrics.body import SERIES, SERIES_MINUTES, build_body, to_minute
from liveserver.metrics.readings import ROOM_SERIES, ProductFunnel, RoomReadings
from liveserver.seckill.service import Drop

NOW = 1_800_000_000_000  # on a minute boundary
MINUTE = to_minute(NOW)
EMPTY = RoomReadings(
    room_id="r1", uv=0, exposure_uv=0, click_uv=0, cart_uv=0, order_uv=0, buyer_uv=0, peak_online=0, pv=0,
    watch_ms=0, likes=0, danmaku=0, danmaku_thinned=0, started_ms=None, room_status="scheduled", catalog={},
    products={}, logged_markers=[], room_series={name: {} for name in ROOM_SERIES}, sale_stats={},
    red_packet_claims=0, red_packet_cents=0, red_packets=[],
)


def drop(drop_id: str = "s1", *, kind: str = "sale", product: str = "p1", price: int = 1000, stock: int = 10,
         left: int = 10, pending: int = 0, paid: int = 0, orders: int = 0, starts: int = NOW - 60_000,
         ends: int = NOW + 60_000, ended: bool = False, sold_out_ms: int = 0) -> Drop:
    return Drop(kind=kind, id=drop_id, room="r1", product=product, price=price, discount=0, stock=stock, left=left,
                pending=pending, paid=paid, per_user=1, starts=starts, ends=ends, pay_ms=900_000, ended=ended,
                sold_out_ms=sold_out_ms, orders=orders)


def build(readings: RoomReadings = EMPTY, drops: list[Drop] | None = None, online: int = 0, **fields: Any
          ) -> dict[str, Any]:
    return build_body(replace(readings, **fields), drops or [], online=online, now_ms=NOW)


def test_an_empty_room_has_every_field_and_zero_ratios() -> None:
    body = build()
    assert list(body) == [
        "room_id", "ts_ms", "room_status", "online", "peak_online", "uv", "pv", "likes", "danmaku", "exposure_uv",
        "click_uv", "cart_uv", "order_count", "order_uv", "paid_count", "buyer_uv", "gmv_cents", "last_paid_at_ms",
        "red_packet_claims", "red_packet_cents", "danmaku_thinned", "series_start_minute", "avg_watch_s", "ctr",
        "click_to_pay_rate", "conversion_rate", "gpm_cents", "uv_value_cents", "products", "series", "windows",
        "markers", "drops", "red_packets", "video",
    ]
    assert body["room_id"] == "r1" and body["ts_ms"] == NOW and body["room_status"] == "scheduled"
    # every denominator is 0: the ratios are 0, not an error
    assert (body["avg_watch_s"], body["ctr"], body["click_to_pay_rate"], body["conversion_rate"]) == (0.0,) * 4
    assert body["gpm_cents"] == 0 and body["uv_value_cents"] == 0
    assert body["last_paid_at_ms"] is None
    assert body["series_start_minute"] == MINUTE  # not started: the series begin now
    assert body["series"] == {name: [0] for name in SERIES} and list(body["series"]) == list(SERIES)
    assert body["products"] == [] and body["markers"] == [] and body["drops"] == [] and body["red_packets"] == []
    assert body["video"] == {"cameras": [], "program": {"layout": "single", "main": None, "inset": None},
                             "whep_viewers": 0, "hls_viewers": 0}


def test_the_funnel_and_its_ratios() -> None:
    sale = drop(paid=10, orders=12, price=12_345)
    body = build(uv=200, pv=250, watch_ms=3_000_000, exposure_uv=100, click_uv=40, cart_uv=15, buyer_uv=10,
                 order_uv=11, drops=[sale])
    assert (body["exposure_uv"], body["click_uv"], body["cart_uv"]) == (100, 40, 15)
    assert (body["order_count"], body["order_uv"], body["paid_count"], body["buyer_uv"]) == (12, 11, 10, 10)
    assert body["gmv_cents"] == 123_450
    assert body["avg_watch_s"] == 15.0 and body["ctr"] == 0.4 and body["click_to_pay_rate"] == 0.25
    assert body["conversion_rate"] == 0.05
    assert body["gpm_cents"] == 123_450 * 1000 // 250 and body["uv_value_cents"] == 123_450 // 200
    # a coupon's claims are not orders, nor money
    coupon = drop("c1", kind="coupon", paid=5, orders=5)
    assert build(drops=[sale, coupon])["order_count"] == 12 and build(drops=[coupon])["gmv_cents"] == 0
    # one zero denominator at a time
    no_clicks = build(uv=10, pv=10, exposure_uv=5, click_uv=0, buyer_uv=0)
    assert no_clicks["ctr"] == 0.0 and no_clicks["click_to_pay_rate"] == 0.0
    no_exposure = build(uv=10, pv=10, exposure_uv=0, click_uv=3, buyer_uv=1)
    assert no_exposure["ctr"] == 0.0 and no_exposure["click_to_pay_rate"] == round(1 / 3, 4)


def test_peak_online_is_never_below_online() -> None:
    assert build(peak_online=7, online=3)["peak_online"] == 7
    assert build(peak_online=7, online=9)["peak_online"] == 9


def test_series_are_per_minute_from_the_start_and_sum_the_sales() -> None:
    started = NOW - 2 * 60_000 - 1
    series = {name: {} for name in ROOM_SERIES} | {"enter": {MINUTE - 3: 4, MINUTE - 2: 5, MINUTE: 1}}
    stats = {"s1": {f"o:{MINUTE - 1}": 2, f"g:{MINUTE - 1}": 2000, "last_paid": NOW - 50_000},
             "s2": {f"o:{MINUTE - 1}": 1, f"g:{MINUTE}": 500, "last_paid": NOW - 5_000}}
    body = build(started_ms=started, room_series=series, sale_stats=stats)
    assert body["series_start_minute"] == MINUTE - 3
    assert body["series"]["enter"] == [4, 5, 0, 1] and body["series"]["online"] == [0, 0, 0, 0]
    assert body["series"]["order_count"] == [0, 0, 3, 0] and body["series"]["gmv_cents"] == [0, 0, 2000, 500]
    assert body["last_paid_at_ms"] == NOW - 5_000
    assert body["windows"]["last"]["enter"] == 9 and body["windows"]["change"]["enter"] is None
    # a long room: the last SERIES_MINUTES minutes only
    old = build(started_ms=NOW - 24 * 3_600_000)
    assert old["series_start_minute"] == MINUTE - SERIES_MINUTES + 1 and len(old["series"]["online"]) == SERIES_MINUTES
    # a room started at epoch 0 is started (0 is not "unknown")
    assert build(started_ms=0)["series_start_minute"] == MINUTE - SERIES_MINUTES + 1


def test_markers_are_the_logged_events_and_the_drops_in_the_series_oldest_first() -> None:
    pin = {"kind": "pin", "product_id": "p1", "at": NOW - 30_000}
    too_old = {"kind": "pin", "product_id": "p0", "at": NOW - 10 * 60_000}  # before the series start
    packet = {"count": 5, "kind": "red_packet", "packet_id": "k1", "at": NOW - 40_000}
    ended = drop("s1", starts=NOW - 50_000, ends=NOW - 20_000, sold_out_ms=NOW - 30_000, left=0)
    coupon = drop("c1", kind="coupon", product="p2", starts=NOW - 45_000, ends=NOW + 60_000, ended=True)
    countdown = drop("s2", starts=NOW + 10_000)  # not started: no marker yet
    logged = [too_old, packet, pin]
    body = build(started_ms=NOW - 60_000, logged_markers=logged, drops=[ended, coupon, countdown])
    assert [(m["kind"], m["at_ms"]) for m in body["markers"]] == [
        ("sale_start", NOW - 50_000), ("coupon_start", NOW - 45_000), ("red_packet", NOW - 40_000),
        ("pin", NOW - 30_000), ("sold_out", NOW - 30_000), ("sale_end", NOW - 20_000), ("coupon_end", NOW),
    ]
    assert body["markers"][2] == {"count": 5, "kind": "red_packet", "packet_id": "k1", "at_ms": NOW - 40_000,
                                  "minute": MINUTE - 1}
    assert body["markers"][0] == {"kind": "sale_start", "at_ms": NOW - 50_000, "sale_id": "s1", "product_id": "p1",
                                  "minute": MINUTE - 1}
    assert body["markers"][1]["coupon_id"] == "c1"
    # the readings stay as read
    assert logged == [too_old, packet, pin] and pin == {"kind": "pin", "product_id": "p1", "at": NOW - 30_000}


def test_the_product_table() -> None:
    catalog = {"p1": {"title": "Tea", "price_cents": 1500}, "p3": {"title": "Pot"}}
    products = {"p1": ProductFunnel(20, 10), "p2": ProductFunnel(5, 2), "p3": ProductFunnel(0, 0)}
    sales = [
        drop("s1", product="p1", left=4, paid=4, orders=6, price=1000),
        drop("s2", product="p1", left=3, paid=1, orders=1, price=900, starts=NOW + 60_000, ends=NOW + 120_000),
        drop("s3", product="p3", left=8, paid=2, orders=2, price=500, ended=True),
    ]
    coupon = drop("c1", kind="coupon", product="p2", left=1, paid=9, orders=9)
    rows = build(catalog=catalog, products=products, drops=[*sales, coupon])["products"]
    assert rows == [
        {"product_id": "p1", "exposure_uv": 20, "click_uv": 10, "order_count": 7, "paid_count": 5,
         "gmv_cents": 4900, "title": "Tea", "price_cents": 1500, "stock_left": 7},  # live and countdown
        {"product_id": "p2", "exposure_uv": 5, "click_uv": 2, "order_count": 0, "paid_count": 0,
         "gmv_cents": 0},  # not in the catalog; a coupon is no sale
        {"product_id": "p3", "exposure_uv": 0, "click_uv": 0, "order_count": 2, "paid_count": 2,
         "gmv_cents": 1000, "title": "Pot", "price_cents": None},  # its sale ended: no stock left shown
    ]
    assert list(rows[0]) == ["product_id", "exposure_uv", "click_uv", "order_count", "paid_count",
                                          "gmv_cents", "title", "price_cents", "stock_left"]


def test_drops_shown_are_those_not_ended_and_the_last_twenty_ended() -> None:
    ended = [drop(f"e{i:02}", ended=True) for i in range(25)]
    live = drop("live")
    body = build(drops=[ended[0], live, *ended[1:]])
    ids = [d["sale_id"] for d in body["drops"]]
    assert ids == ["live", *(d.id for d in ended[5:])]
    assert body["drops"][0]["kind"] == "sale" and body["drops"][0]["status"] == "live"


def test_red_packets_are_the_claim_totals_and_the_last_twenty_packets() -> None:
    packets = [{"packet_id": f"k{i:02}", "claimed_cents": i} for i in range(25)]
    body = build(red_packet_claims=12, red_packet_cents=3456, red_packets=packets)
    assert body["red_packet_claims"] == 12 and body["red_packet_cents"] == 3456
    assert body["red_packets"] == packets[5:]
    assert build(red_packets=packets[:3])["red_packets"] == packets[:3]


def test_counts_read_pass_through() -> None:
    body = build(likes=42, danmaku=17, danmaku_thinned=3, room_status=None, online=5)
    assert (body["likes"], body["danmaku"], body["danmaku_thinned"]) == (42, 17, 3)
    assert body["room_status"] is None and body["online"] == 5


def test_the_video_block_is_the_media_nodes_status_and_the_hls_viewers_of_every_node() -> None:
    status = {"cameras": [{"camera": "cam1", "fps": 29.8, "width": 1280, "height": 720, "kbps": 2410}],
              "program": {"layout": "pip", "main": "cam1", "inset": "cam2", "inset_corner": "br"},
              "whep_viewers": 3}
    video = build(video=status, hls_viewers=41)["video"]
    assert video == {"cameras": status["cameras"], "program": {"layout": "pip", "main": "cam1", "inset": "cam2"},
                     "whep_viewers": 3, "hls_viewers": 41}
