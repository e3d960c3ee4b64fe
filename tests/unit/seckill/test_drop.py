"""Pure parts of the drops: the status rule and the too-soon rule."""

from __future__ import annotations

import pytest

from liveserver.seckill.drop import drop_status, too_soon


@pytest.mark.parametrize(
    ("ended", "now", "left", "status"),
    [
        (False, 50, 5, "countdown"),
        (False, 100, 5, "live"),
        (False, 150, 0, "sold_out"),
        (False, 200, 5, "ended"),
        (True, 150, 5, "ended"),
        (False, 50, 0, "countdown"),
    ],
)
def test_drop_status(ended: bool, now: int, left: int, status: str) -> None:
    assert drop_status(ended, 100, 200, left, now) == status


def test_too_soon() -> None:
    assert too_soon(1_010, 1_000, rtt_ms=100) is True  # 10 ms after the start, one way is 50 ms
    assert too_soon(1_030, 1_000, rtt_ms=100) is False  # within the clock sync's own error
    assert too_soon(1_060, 1_000, rtt_ms=100) is False
    assert too_soon(990, 1_000, rtt_ms=100) is False  # before the start: the script says not_started
    assert too_soon(1_001, 1_000, rtt_ms=None) is False  # no measurement, no rule
    assert too_soon(1_001, 1_000, rtt_ms=0) is False
