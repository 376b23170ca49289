"""The overload scenario's reading of the server's call-duration histogram."""

from __future__ import annotations

import math
from collections import Counter

from notesuite_bench.scenarios.overload import Histogram


def histogram(buckets: dict[float, int]) -> Histogram:
    return Histogram(Counter(buckets))


def test_a_quantile_is_interpolated_within_its_bucket():
    # 100 calls: 50 under 1 ms, 40 more under 2 ms, 10 more under 4 ms.
    calls = histogram({0.001: 50, 0.002: 90, 0.004: 100, math.inf: 100})
    assert calls.quantile(0.5) == 0.001
    assert math.isclose(calls.quantile(0.7), 0.0015)
    assert math.isclose(calls.quantile(0.99), 0.0038)


def test_a_quantile_past_the_last_bound_is_that_bound():
    assert histogram({0.001: 0, 10.0: 1, math.inf: 2}).quantile(0.99) == 10.0


def test_a_run_is_the_difference_of_two_scrapes():
    before = histogram({0.001: 5, math.inf: 7})
    after = histogram({0.001: 15, math.inf: 20})
    assert after.minus(before).buckets == Counter({0.001: 10, math.inf: 13})


def test_no_calls_have_no_quantile():
    assert math.isnan(histogram({0.001: 0, math.inf: 0}).quantile(0.99))
