"""Alert rules, the tracker that turns them into firing/cleared events, and the 5-minute windows (pure)."""

from __future__ import annotations

from liveserver.metrics.alerts import AlertRules, AlertTracker, OnlineWindow, SaleState, evaluate
from liveserver.metrics.ratios import windows

RULES = AlertRules(online_drop_pct=20, online_window_s=60, online_min=20, no_paid_s=300, low_stock=10,
                   unpaid_min=20, unpaid_ratio=0.5)
NOW = 1_800_000_000_000


def sale(status: str = "live", left: int = 100, pending: int = 0, paid: int = 0, starts: int = NOW - 1000,
         sale_id: str = "s1", stock: int = 0) -> SaleState:
    return SaleState(sale_id, "p1", status, left, pending, paid, starts, stock)


def judge(online: int = 100, recent_peak: int = 100, sales: list[SaleState] | None = None,
          last_paid_ms: int = 0, room_live: bool = True) -> dict[str, dict]:
    return evaluate(RULES, now_ms=NOW, online=online, recent_peak=recent_peak, room_live=room_live,
                    sales=sales or [], last_paid_ms=last_paid_ms)


def test_online_drop_fires_at_the_threshold_and_not_in_small_rooms() -> None:
    assert "online_drop" not in judge(online=81, recent_peak=100)
    alert = judge(online=80, recent_peak=100)["online_drop"]
    assert alert["value"] == 20.0 and alert["baseline"] == 100 and alert["online"] == 80
    assert alert["severity"] == "critical" and "100 -> 80" in alert["message"]
    assert judge(online=5, recent_peak=19) == {}  # below online_min: too small to judge
    assert judge(online=10, recent_peak=100, room_live=False) == {}  # an ended room's audience leaves


def test_no_paid_orders_counts_from_the_later_of_last_payment_and_sale_start() -> None:
    assert "no_paid_orders" not in judge(sales=[sale(starts=NOW - 299_000)])
    fired = judge(sales=[sale(starts=NOW - 300_000)])["no_paid_orders"]
    assert fired["value"] == 300 and fired["last_paid_at_ms"] is None
    assert "no_paid_orders" not in judge(sales=[sale(starts=NOW - 900_000)], last_paid_ms=NOW - 10_000)
    assert "no_paid_orders" in judge(sales=[sale(starts=NOW - 900_000)], last_paid_ms=NOW - 400_000)
    # only while a sale is live: a countdown or ended sale does not count
    assert judge(sales=[sale("countdown", starts=NOW + 5000)], last_paid_ms=0) == {}
    assert judge(sales=[sale("ended", starts=NOW - 900_000)], last_paid_ms=0) == {}


def test_low_stock_is_per_live_sale() -> None:
    alerts = judge(sales=[sale(left=9, sale_id="a"), sale(left=10, sale_id="b"), sale("sold_out", left=0, sale_id="c")],
                   last_paid_ms=NOW)
    assert set(alerts) == {"low_stock:a"}
    assert alerts["low_stock:a"]["sale_id"] == "a" and alerts["low_stock:a"]["value"] == 9


def test_unpaid_backlog_needs_both_the_count_and_the_share() -> None:
    assert "unpaid_backlog" in judge(sales=[sale(pending=20, paid=20)], last_paid_ms=NOW)
    assert "unpaid_backlog" not in judge(sales=[sale(pending=19, paid=0)], last_paid_ms=NOW)
    assert "unpaid_backlog" not in judge(sales=[sale(pending=20, paid=21)], last_paid_ms=NOW)
    # pending orders of an ended sale still wait for payment
    both = judge(sales=[sale("ended", pending=15), sale(pending=5, sale_id="s2")], last_paid_ms=NOW)
    assert both["unpaid_backlog"]["pending"] == 20 and both["unpaid_backlog"]["orders"] == 20


def test_tracker_fires_once_keeps_since_and_clears() -> None:
    t = AlertTracker()
    firing = judge(online=70, recent_peak=100)
    events = t.update(NOW, firing)
    assert [(e["alert_id"], e["status"], e["since_ms"]) for e in events] == [("online_drop", "firing", NOW)]
    assert t.update(NOW + 1000, judge(online=60, recent_peak=100)) == []  # still firing: no new event
    assert t.firing()[0]["online"] == 60 and t.firing()[0]["since_ms"] == NOW
    cleared = t.update(NOW + 2000, {})
    assert [(e["alert_id"], e["status"], e["ts_ms"]) for e in cleared] == [("online_drop", "cleared", NOW + 2000)]
    assert t.firing() == []


def test_tracker_clears_only_after_the_condition_stayed_away() -> None:
    t = AlertTracker()
    low = judge(sales=[sale(left=9)], last_paid_ms=NOW)
    assert len(t.update(NOW, low, clear_after_ms=5000)) == 1
    assert t.update(NOW + 1000, {}, clear_after_ms=5000) == []  # stock back at 10 for a moment
    assert t.update(NOW + 2000, low, clear_after_ms=5000) == []  # and down again: still the same alert
    assert t.update(NOW + 3000, {}, clear_after_ms=5000) == []
    assert t.update(NOW + 7000, {}, clear_after_ms=5000) == []  # quiet for 4 s only
    (cleared,) = t.update(NOW + 8000, {}, clear_after_ms=5000)
    assert cleared["status"] == "cleared" and cleared["since_ms"] == NOW


def test_online_window_peak_slides() -> None:
    w = OnlineWindow()
    assert w.add(0, 100, 60_000) == 100
    assert w.add(30_000, 70, 60_000) == 100
    assert w.add(61_000, 70, 60_000) == 70  # the 100 at t=0 left the window
    assert w.add(62_000, 90, 60_000) == 70


def test_windows_compare_complete_minutes_only() -> None:
    # 11 minutes: 5 complete at 10 online / 0 GMV, 5 complete at 20 / 100, then the current minute
    series = {"online": [10] * 5 + [20] * 5 + [99], "gmv_cents": [0] * 5 + [100] * 5 + [7], "enter": [1] * 5 + [3] * 6}
    w = windows(series)
    assert w["last"] == {"online": 20.0, "gmv_cents": 500, "enter": 15}
    assert w["previous"] == {"online": 10.0, "gmv_cents": 0, "enter": 5}
    assert w["change"] == {"online": 1.0, "gmv_cents": None, "enter": 2.0}


def test_windows_have_no_change_until_both_windows_are_complete() -> None:
    steady = {"enter": [10] * 8}  # a 7-minute-old room, steady at 10 a minute, 1 s into its 8th minute
    w = windows(steady)
    assert w["last"]["enter"] == 50 and w["previous"]["enter"] == 20  # only 2 minutes before the window
    assert w["change"]["enter"] is None
    assert windows({"online": [5]})["last"]["online"] == 0  # the first minute is still counting


def test_low_stock_is_judged_against_the_sales_own_stock() -> None:
    def low(left: int, stock: int) -> bool:
        return bool(judge(sales=[sale(left=left, sale_id="s", stock=stock)], last_paid_ms=NOW))

    assert not low(3, 3)  # a new 3-unit sale: nothing sold yet
    assert not low(2, 3)  # 67 % left is not low
    assert low(1, 5)  # 20 %
    assert not low(9, 12)
    assert low(9, 10_000) and not low(10, 10_000)  # big sales warn at the absolute threshold
