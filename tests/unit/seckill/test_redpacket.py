"""Properties of the red-packet split (hypothesis)."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveserver.seckill.redpacket import split_red_packet


@settings(max_examples=300, deadline=None, database=None)
@given(count=st.integers(1, 500), extra=st.integers(0, 1_000_000), seed=st.integers(0, 2**32))
def test_shares_sum_exactly_each_at_least_one_cent(count: int, extra: int, seed: int) -> None:
    total = count + extra
    shares = split_red_packet(total, count, random.Random(seed))
    assert len(shares) == count
    assert sum(shares) == total
    assert min(shares) >= 1


@settings(max_examples=50, deadline=None, database=None)
@given(seed=st.integers(0, 2**32))
def test_minimum_totals(seed: int) -> None:
    assert split_red_packet(7, 7, random.Random(seed)) == [1] * 7
    assert split_red_packet(1, 1, random.Random(seed)) == [1]


def test_rejects_impossible_splits() -> None:
    with pytest.raises(ValueError):
        split_red_packet(9, 10, random.Random(0))
    with pytest.raises(ValueError):
        split_red_packet(10, 0, random.Random(0))


def test_no_bias_toward_early_claimers() -> None:
    """Double mean: every position's expected share is total / count (here within 2 %)."""
    rng = random.Random(42)
    runs = 20_000
    sums = [0] * 10
    for _ in range(runs):
        for i, share in enumerate(split_red_packet(10_000, 10, rng)):
            sums[i] += share
    means = [s / runs for s in sums]
    assert all(abs(m - 1000) < 20 for m in means), means


def test_spread_is_that_of_double_mean() -> None:
    """100.00 into 10: the largest share is about 21.00 on average (line cutting: about 29)."""
    rng = random.Random(7)
    largest = statistics.mean(max(split_red_packet(10_000, 10, rng)) for _ in range(5000))
    assert 1900 < largest < 2300
