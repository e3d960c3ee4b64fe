"""The red-packet status rule (pure; the same rule as ``_redpacket_lib.lua``)."""

from __future__ import annotations

from liveserver.seckill.packets import packet_status


def test_packet_status() -> None:
    assert packet_status(0, 5, 100, 200, 50) == "countdown"
    assert packet_status(0, 5, 100, 200, 150) == "live"
    assert packet_status(5, 5, 100, 200, 150) == "empty"
    assert packet_status(5, 5, 100, 200, 250) == "empty"
    assert packet_status(3, 5, 100, 200, 250) == "expired"
