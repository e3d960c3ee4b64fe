"""The fan-out's thinning under a flood (pure)."""

from __future__ import annotations

from liveserver.danmaku.fanout import thin


def test_thin_keeps_host_first_then_newest_in_seq_order() -> None:
    items = [{"id": i} for i in range(1, 11)]
    items[2]["prio"] = 1
    kept = thin(items, 4)
    assert [i["id"] for i in kept] == [3, 8, 9, 10]
    assert thin(items, 20) is items
