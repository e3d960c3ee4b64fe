"""offset_from_sample: Redis's clock minus ours, half the round trip taken off."""

from __future__ import annotations

import pytest

from liveserver.clock import offset_from_sample


def test_offset_ahead() -> None:
    # sent 100.0 s, received 100.2 s: midpoint 100.1 s = 100100 ms; Redis 100.6 s = 100600 ms.
    assert offset_from_sample(100.0, 100.2, (100, 600_000)) == pytest.approx(500.0, abs=1e-6)


def test_offset_behind() -> None:
    # midpoint 200.5 s = 200500 ms; Redis 200.25 s = 200250 ms.
    assert offset_from_sample(200.0, 201.0, (200, 250_000)) == pytest.approx(-250.0, abs=1e-6)


def test_offset_zero_when_redis_time_is_the_midpoint() -> None:
    assert offset_from_sample(50.0, 50.5, (50, 250_000)) == pytest.approx(0.0, abs=1e-6)


def test_zero_rtt() -> None:
    assert offset_from_sample(10.0, 10.0, (10, 1)) == pytest.approx(0.001, abs=1e-9)


def test_microseconds_are_kept() -> None:
    # Redis TIME answers (seconds, microseconds); 123 us is 0.123 ms.
    assert offset_from_sample(0.0, 0.0, (0, 123)) == pytest.approx(0.123, abs=1e-9)


def test_realistic_epoch_values() -> None:
    sent = 1_700_000_000.000
    received = 1_700_000_000.010  # 10 ms round trip
    redis_time = (1_700_000_000, 5_000)  # exactly the midpoint
    assert offset_from_sample(sent, received, redis_time) == pytest.approx(0.0, abs=1e-3)
    redis_time = (1_700_000_001, 5_000)  # one second ahead
    assert offset_from_sample(sent, received, redis_time) == pytest.approx(1000.0, abs=1e-3)


def test_result_is_float() -> None:
    assert isinstance(offset_from_sample(1.0, 1.0, (1, 0)), float)
