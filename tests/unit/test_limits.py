"""Per-connection rate limits: the token bucket and the strike counter (explicit clocks)."""

from __future__ import annotations

import pytest

from liveserver.limits import StrikeCounter, TokenBucket


def test_bucket_starts_full() -> None:
    b = TokenBucket(rate=4, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [True, True, True]
    assert b.take(0.0) is False
    assert b.take(0.0) is False


def test_bucket_refills_at_rate() -> None:
    b = TokenBucket(rate=4, burst=2, now=10.0)  # one token every 0.25 s
    assert b.take(10.0) and b.take(10.0)
    assert b.take(10.0) is False
    assert b.take(10.125) is False  # half a token
    assert b.take(10.25) is True  # the half plus another half: one token
    assert b.take(10.25) is False
    assert b.take(10.75) is True  # two tokens saved up
    assert b.take(10.75) is True
    assert b.take(10.75) is False


def test_bucket_never_above_burst() -> None:
    b = TokenBucket(rate=100, burst=5, now=0.0)
    results = [b.take(1000.0) for _ in range(10)]  # a long idle time saves up only ``burst``
    assert results == [True] * 5 + [False] * 5


def test_bucket_clock_going_backwards_adds_nothing() -> None:
    b = TokenBucket(rate=1, burst=1, now=100.0)
    assert b.take(100.0) is True
    assert b.take(50.0) is False
    assert b.take(50.5) is False  # elapsed since 50.0 is only half a token
    assert b.take(51.0) is True


def test_bucket_cost() -> None:
    b = TokenBucket(rate=1, burst=4, now=0.0)
    assert b.take(0.0, cost=3) is True
    assert b.take(0.0, cost=2) is False  # one left: a failed take costs nothing
    assert b.take(0.0, cost=1) is True
    assert b.take(0.0) is False


def test_bucket_fractional_burst_and_rate() -> None:
    b = TokenBucket(rate=0.5, burst=1.5, now=0.0)
    assert b.take(0.0) is True
    assert b.take(0.0) is False  # 0.5 left
    assert b.take(1.0) is True  # 0.5 + 0.5


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0), (1, 0.5), (1, -3)])
def test_bucket_invalid_args(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def test_strikes_exceed_only_past_the_limit() -> None:
    c = StrikeCounter(limit=3, window=10.0)
    assert [c.strike(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert c.strike(3.0) is True  # the fourth within 10 s
    assert c.strike(4.0) is True


def test_strikes_forget_old_ones() -> None:
    c = StrikeCounter(limit=3, window=10.0)
    for t in (0.0, 1.0, 2.0):
        assert c.strike(t) is False
    # at 10.0 the strike at 0.0 is exactly a window old and is forgotten: 1, 2, 10 remain
    assert c.strike(10.0) is False
    # at 11.5 the one at 1.0 is gone too: 2, 10, 11.5
    assert c.strike(11.5) is False
    assert c.strike(11.6) is True  # 2, 10, 11.5, 11.6
    # long after, everything is forgotten
    assert c.strike(1000.0) is False


def test_strikes_limit_zero_exceeds_at_first() -> None:
    c = StrikeCounter(limit=0, window=5.0)
    assert c.strike(0.0) is True
    assert c.strike(100.0) is True


def test_strikes_spread_out_never_exceed() -> None:
    c = StrikeCounter(limit=1, window=1.0)
    assert all(c.strike(float(t)) is False for t in range(100))
