"""Alerts to the host, and the markers and windows on the metrics series, through a running node."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from liveserver.sdk import ApiError, HostClient, ViewerClient

from .conftest import StartNode, join, token
from .test_metrics import FAST


async def _room(h: HostClient) -> str:
    room = (await h.create_room("Alerts", room_id=f"a-{uuid.uuid4().hex[:8]}"))["room_id"]
    await h.start_room(room)
    await h.put_product(room, "p1", "Tea", 1500)
    return room


class Alerts:
    """A host's ``alert`` events as they arrive: several may come in one push, in any order."""

    def __init__(self, ws: ViewerClient) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def wait(self, alert_id: str, status: str, timeout_s: float = 5) -> dict[str, Any]:
        def wanted(m: dict[str, Any]) -> bool:
            return m["alert_id"] == alert_id and m["status"] == status

        while not any(wanted(m) for m in self.seen):
            self.seen.append(await self.ws.wait_for("alert", timeout_s))
        return next(m for m in self.seen if wanted(m))


async def test_online_drop_fires_and_clears_for_the_host_only(start_node: StartNode) -> None:
    node = await start_node(alert_online_min=5, alert_online_window_s=3.0, alert_clear_s=0.0, **FAST)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        room = await _room(h)
        host_ws = await ViewerClient.connect(node.ws_url, token("host1", "host"), room)
        alerts = Alerts(host_ws)
        viewers = [await join(node, f"v{i}", room) for i in range(10)]
        await host_ws.wait_for("metrics", 5, lambda m: m["online"] == 10)  # the host is not audience
        for v in viewers[:4]:  # 10 -> 6: down 40 %
            await v.close()
        fired = await alerts.wait("online_drop", "firing")
        assert fired["kind"] == "online_drop" and fired["baseline"] == 10 and fired["online"] == 6
        body = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
        assert [a["alert_id"] for a in body["alerts"]] == ["online_drop"]
        # the 10 leaves the 3 s window: 6 is the new baseline and the alert clears
        cleared = await alerts.wait("online_drop", "cleared", timeout_s=6)
        assert cleared["since_ms"] == fired["since_ms"] and cleared["ts_ms"] > fired["ts_ms"]
        assert not [m for m in viewers[5].events._queue if m.get("type") in ("alert", "metrics")]  # noqa: SLF001
        for c in (host_ws, *viewers[4:]):
            await c.close()


async def test_stock_backlog_and_no_payment_alerts_follow_the_sale(start_node: StartNode) -> None:
    rules = {"alert_low_stock": 10, "alert_low_stock_pct": 80, "alert_unpaid_min": 3, "alert_unpaid_ratio": 0.5, "alert_no_paid_s": 2.5,
             "alert_clear_s": 0.0}
    node = await start_node(**rules, **FAST)
    async with HostClient(node.base_url, token("host1", "host")) as h, \
            HostClient(node.base_url, token("pay", "admin")) as admin:
        room = await _room(h)
        host_ws = await ViewerClient.connect(node.ws_url, token("host1", "host"), room)
        alerts = Alerts(host_ws)
        sale = await h.create_flash_sale(room, "p1", 1000, 12)
        sid = sale["sale_id"]
        await asyncio.sleep(1.2)  # pushes go by: a sale nobody bought from yet is not low on stock
        assert not [m for m in host_ws.events._queue if m.get("kind") == "low_stock"]  # noqa: SLF001
        quiet = await alerts.wait("no_paid_orders", "firing", timeout_s=6)
        assert quiet["value"] >= 2 and quiet["last_paid_at_ms"] is None
        viewers = [await join(node, f"b{i}", room) for i in range(3)]
        orders = [(await v.grab(sale_id=sid))["order_id"] for v in viewers]  # 9 left, 3 unpaid of 3
        low = await alerts.wait(f"low_stock:{sid}", "firing")
        other = await start_node(**rules, **FAST)  # no host there: GET judges the rules on the spot
        async with HostClient(other.base_url, token("host1", "host")) as h2:
            there = await h2.request("GET", f"/api/v1/rooms/{room}/metrics")
        assert {a["alert_id"] for a in there["alerts"]} >= {f"low_stock:{sid}", "unpaid_backlog"}
        assert all(a["since_ms"] is None for a in there["alerts"])
        assert low["value"] == 9 and low["sale_id"] == sid and low["product_id"] == "p1"
        backlog = await alerts.wait("unpaid_backlog", "firing")
        assert backlog["pending"] == 3 and backlog["orders"] == 3
        await admin.pay_order(orders[0])
        await admin.pay_order(orders[1])  # 1 pending of 3: the backlog is gone, and someone paid
        await alerts.wait("unpaid_backlog", "cleared")
        await alerts.wait("no_paid_orders", "cleared")
        await h.end_room(room)  # the sale ends: nothing is live to run low
        await alerts.wait(f"low_stock:{sid}", "cleared")
        for c in (host_ws, *viewers):
            await c.close()


async def test_markers_and_windows_on_the_series(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        room = await _room(h)
        await h.pin_product(room, "p1")
        viewers = [await join(node, f"w{i}", room) for i in range(2)]
        sale = await h.create_flash_sale(room, "p1", 1000, 2)
        for v in viewers:
            assert (await v.grab(sale_id=sale["sale_id"]))["ok"]
        packet = await h.create_red_packet(room, 500, 5)
        got = [await v.claim(packet["packet_id"]) for v in viewers]
        await asyncio.sleep(1.2)  # the order and wallet streams are counted
        m = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
        kinds = [(e["kind"], e.get("product_id") or e.get("packet_id")) for e in m["markers"]]
        assert kinds == [("pin", "p1"), ("sale_start", "p1"), ("sold_out", "p1"), ("red_packet", packet["packet_id"])]
        assert all(e["minute"] >= m["series_start_minute"] for e in m["markers"])
        sold = next(e for e in m["markers"] if e["kind"] == "sold_out")
        assert sold["sale_id"] == sale["sale_id"]
        assert m["drops"][0]["sale_id"] == sale["sale_id"] and m["drops"][0]["status"] == "sold_out"
        assert m["drops"][0]["pending"] == 2 and m["drops"][0]["stock_left"] == 0
        assert m["red_packet_claims"] == 2 and m["red_packet_cents"] == sum(g["amount_cents"] for g in got)
        w = m["windows"]
        assert w["minutes"] == 5 and set(w["last"]) == set(m["series"])
        assert all(v is None for v in w["change"].values())  # a new room: no complete windows to compare
        await h.end_room(room)
        ended = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
        assert [e["kind"] for e in ended["markers"]][-1] == "sale_end"
        for v in viewers:
            await v.close()


async def test_a_dashboard_reload_keeps_its_alerts(start_node: StartNode) -> None:
    node = await start_node(alert_low_stock=10, alert_low_stock_pct=100, alert_clear_s=0.0, **FAST)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        room = await _room(h)
        sale = await h.create_flash_sale(room, "p1", 1000, 5)
        buyer = await join(node, "early", room)
        assert (await buyer.grab(sale_id=sale["sale_id"]))["ok"]  # 4 of 5 left: low
        await buyer.close()
        first = await ViewerClient.connect(node.ws_url, token("host1", "host"), room)
        fired = await Alerts(first).wait(f"low_stock:{sale['sale_id']}", "firing")
        await first.close()
        await asyncio.sleep(1.5)  # pushes go by with no host connected
        again = await ViewerClient.connect(node.ws_url, token("host1", "host"), room)
        body = await again.wait_for("metrics", 3)
        assert [(a["alert_id"], a["since_ms"]) for a in body["alerts"]] == [(fired["alert_id"], fired["since_ms"])]
        await asyncio.sleep(1.2)  # no second "firing" for the same alert
        assert not [m for m in again.events._queue if m.get("type") == "alert"]  # noqa: SLF001
        await again.close()


async def test_another_rooms_drop_or_packet_id_is_refused_and_not_shown(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    async with HostClient(node.base_url, token("hostA", "host")) as a, \
            HostClient(node.base_url, token("hostB", "host")) as b:
        room_a, room_b = await _room(a), await _room(b)
        await a.request("POST", f"/api/v1/rooms/{room_a}/flash-sales",
                        {"sale_id": "secret1", "product_id": "p1", "price_cents": 100, "stock": 5})
        await a.create_red_packet(room_a, 300, 3, packet_id="pk1")
        with pytest.raises(ApiError) as e:
            await b.request("POST", f"/api/v1/rooms/{room_b}/flash-sales",
                            {"sale_id": "secret1", "product_id": "p1", "price_cents": 1, "stock": 1})
        assert e.value.status == 409
        with pytest.raises(ApiError) as e:
            await b.create_red_packet(room_b, 900, 9, packet_id="pk1")
        assert e.value.status == 409
        seen_by_b = await b.request("GET", f"/api/v1/rooms/{room_b}/metrics")
        assert seen_by_b["drops"] == [] and seen_by_b["markers"] == [] and seen_by_b["alerts"] == []
        viewer = await join(node, "curious", room_b)
        assert viewer.welcome["drops"] == []
        await viewer.close()
        # a retry of A's own packet with another body is the packet as it was made, marked once
        retry = await a.create_red_packet(room_a, 900, 9, packet_id="pk1")
        assert retry["total_cents"] == 300 and retry["count"] == 3
        seen_by_a = await a.request("GET", f"/api/v1/rooms/{room_a}/metrics")
        assert [m["kind"] for m in seen_by_a["markers"]] == ["sale_start", "red_packet"]
        assert seen_by_a["markers"][1]["total_cents"] == 300
        assert [d["sale_id"] for d in seen_by_a["drops"]] == ["secret1"]


async def test_a_refused_metric_write_does_not_stop_the_counting(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        broken, fine = await _room(h), await _room(h)
        await node.services.redis.set(node.services.keys.room(broken).metric("counts"), "not a hash")
        viewers = [await join(node, "v1", broken), await join(node, "v2", fine)]
        await viewers[1].send({"type": "exposure", "product_id": "p1"})
        await asyncio.sleep(1.5)  # a flush: the broken room's writes are refused, the others applied
        m = await h.request("GET", f"/api/v1/rooms/{fine}/metrics")
        assert m["pv"] == 1 and m["uv"] == 1 and m["exposure_uv"] == 1
        viewers.append(await join(node, "v3", fine))  # and the counting goes on
        await asyncio.sleep(1.2)
        assert (await h.request("GET", f"/api/v1/rooms/{fine}/metrics"))["pv"] == 2
        for v in viewers:
            await v.close()
