"""Live metrics against the ground truth the test computes from the events it sent."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from liveserver.metrics.ratios import ratios
from liveserver.sdk import ApiError, HostClient, ViewerClient

from .conftest import StartNode, join, token

FAST = {"client_msg_rate": 1000.0, "client_msg_burst": 1000, "http_write_rate": 1000.0, "http_write_burst": 1000,
        "grab_user_rate": 1000.0, "grab_user_burst": 1000, "grab_ip_rate": 1e5, "grab_ip_burst": 100000}


def test_ratios_follow_the_contract() -> None:
    c = {"uv": 200, "pv": 250, "watch_ms": 3_000_000, "exposure_uv": 100, "click_uv": 40, "buyer_uv": 10,
         "gmv_cents": 123_450}
    r = ratios(c)
    assert r == {"avg_watch_s": 15.0, "ctr": 0.4, "click_to_pay_rate": 0.25, "conversion_rate": 0.05,
                 "gpm_cents": 123_450 * 1000 // 250, "uv_value_cents": 123_450 // 200}
    zero = ratios({k: 0 for k in c})
    assert all(v == 0 for v in zero.values())


async def test_metrics_match_the_events(start_node: StartNode) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    h = HostClient(a.base_url, token("host1", "host"))
    room = (await h.create_room("Metrics", room_id=f"m-{uuid.uuid4().hex[:8]}"))["room_id"]
    await h.start_room(room)
    await h.put_product(room, "p1", "Tea", 1500)
    await h.put_product(room, "p2", "Cup", 800)
    host_ws = await ViewerClient.connect(a.ws_url, token("host1", "host"), room)
    viewers = [await join((a, b)[i % 2], f"m{i}", room) for i in range(30)]
    again = await join(b, "m0", room)  # m0 enters twice through another node: uv 30
    # funnel: 20 see p1, 10 of them click; 5 see p2, 2 click
    for i, v in enumerate(viewers):
        if i < 20:
            await v.send({"type": "exposure", "product_id": "p1"})
            await v.send({"type": "exposure", "product_id": "p1"})  # repeats do not raise a uv
        if i < 10:
            await v.send({"type": "click", "product_id": "p1"})
        if i < 5:
            await v.send({"type": "exposure", "product_id": "p2"})
        if i < 2:
            await v.send({"type": "click", "product_id": "p2"})
        if i < 3:
            await v.send({"type": "cart", "product_id": "p1"})
    sale = await h.create_flash_sale(room, "p1", 1000, 10)
    orders = [(await v.grab(sale_id=sale["sale_id"]))["order_id"] for v in viewers[:6]]
    async with HostClient(a.base_url, token("pay", "admin")) as admin:
        for oid in orders[:4]:
            await admin.pay_order(oid)
    for v in viewers[:3]:
        await v.request({"type": "danmaku", "text": "nice"})
    await asyncio.sleep(1.5)  # the order stream is counted and the per-second tick runs
    m = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
    # 30 viewers (m0 entered twice); the host's own connection is not audience, on either node
    assert m["online"] == 30 and m["uv"] == 30 and m["pv"] == 31
    assert m["peak_online"] >= 30
    assert m["exposure_uv"] == 20 and m["click_uv"] == 10 and m["cart_uv"] == 3  # room-level: distinct users over all products
    assert m["order_count"] == 6 and m["order_uv"] == 6
    assert m["paid_count"] == 4 and m["buyer_uv"] == 4 and m["gmv_cents"] == 4000
    assert m["danmaku"] == 3
    assert m["ctr"] == 0.5 and m["click_to_pay_rate"] == 0.4 and m["conversion_rate"] == round(4 / 30, 4)
    assert m["gpm_cents"] == 4000 * 1000 // 31 and m["uv_value_cents"] == 4000 // 30
    products = {p["product_id"]: p for p in m["products"]}
    assert products["p1"] == {"product_id": "p1", "title": "Tea", "price_cents": 1500, "exposure_uv": 20,
                              "click_uv": 10, "order_count": 6, "paid_count": 4, "gmv_cents": 4000, "stock_left": 4}
    assert products["p2"]["exposure_uv"] == 5 and products["p2"]["click_uv"] == 2 and products["p2"]["gmv_cents"] == 0
    assert sum(m["series"]["enter"]) == 31 and sum(m["series"]["gmv_cents"]) == 4000
    assert sum(m["series"]["order_count"]) == 6 and sum(m["series"]["danmaku"]) == 3
    assert m["avg_watch_s"] > 0
    # the host gets the body pushed once a second; viewers never do
    pushed = await host_ws.wait_for("metrics", timeout_s=3)
    assert pushed["room_id"] == room and pushed["gmv_cents"] == 4000
    assert all(msg.get("type") != "metrics" for msg in list(viewers[1].events._queue) if isinstance(msg, dict))  # noqa: SLF001
    async with HostClient(a.base_url, token("m1")) as viewer_http:
        with pytest.raises(ApiError) as e:
            await viewer_http.request("GET", f"/api/v1/rooms/{room}/metrics")
        assert e.value.status == 403
    for c in (host_ws, again, *viewers):
        await c.close()
    await h.close()
