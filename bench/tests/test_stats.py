"""stats.py (medians, min–max, round-by-round pairs) and the percentiles of load.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import run
from notesuite_bench import load
from notesuite_bench.stats import Selection, Stat, difference, paired, ratio, stat

HEALTH_40 = Selection("health", "notesuite users", 40)
GO_40 = Selection("health", "grpc-go", 40)


def test_a_stat_is_the_median_and_range_of_its_values():
    assert Stat.of([3.0, 1.0, 2.0], total=3) == Stat(median=2.0, low=1.0, high=3.0, valid=3, total=3)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert Stat.of([10.0, 1.0, 2.0, 3.0], total=4).median == 2.5


def test_no_values_is_no_stat():
    assert Stat.of([], total=3) is None


def test_a_stat_is_complete_only_when_every_run_was_valid():
    assert Stat.of([1.0, 2.0], total=2).complete
    assert not Stat.of([1.0, 2.0], total=3).complete


def test_a_stat_is_written_as_median_and_range_scaled():
    assert Stat.of([1500.0, 1000.0, 2500.0], total=3).text(1, scale=1e-3) == "1.5 (1.0–2.5)"
    # One value has no range to show.
    assert Stat.of([0.123], total=1).text(2) == "0.12"


def test_stat_takes_only_valid_runs_of_the_selection_and_counts_all_of_them():
    runs = [
        run("health", "notesuite users", 1, 40, rps=100.0),
        run("health", "notesuite users", 2, 40, rps=300.0),
        run("health", "notesuite users", 3, 40, problems=("h2load: 1 failed",), rps=1e9),
        run("health", "notesuite users", 1, 1000, rps=7.0),  # another load
        run("health", "grpc-go", 1, 40, rps=5.0),  # another series
        run("hop", "notesuite users", 1, 40, rps=6.0),  # another scenario
    ]
    assert stat(runs, HEALTH_40, "rps") == Stat(median=200.0, low=100.0, high=300.0, valid=2, total=3)
    assert stat(runs, HEALTH_40, "p99_ms") is None


def test_an_environmental_problem_keeps_a_run_out_of_the_median_too():
    runs = [
        run("health", "notesuite users", 1, 40, rps=100.0),
        run("health", "notesuite users", 2, 40, environmental=("too short",), rps=1e9),
    ]
    assert stat(runs, HEALTH_40, "rps") == Stat(median=100.0, low=100.0, high=100.0, valid=1, total=2)


def test_paired_combines_round_by_round_and_skips_rounds_without_a_valid_pair():
    runs = [
        run("health", "notesuite users", 1, 40, rps=130.0),
        run("health", "grpc-go", 1, 40, rps=100.0),
        run("health", "notesuite users", 2, 40, rps=300.0),
        run("health", "grpc-go", 2, 40, rps=200.0),
        run("health", "notesuite users", 3, 40, rps=999.0),
        run("health", "grpc-go", 3, 40, problems=("probe: refused",), rps=1.0),
        run("health", "notesuite users", 4, 40, problems=("h2load: 1 failed",), rps=1.0),
        run("health", "grpc-go", 4, 40, rps=100.0),
    ]
    # Round 1: 1.3, round 2: 1.5; rounds 3 and 4 have an invalid run but still count in total.
    assert paired(runs, HEALTH_40, GO_40, "rps", ratio) == Stat(median=1.4, low=1.3, high=1.5, valid=2, total=4)
    assert paired(runs, HEALTH_40, GO_40, "rps", difference) == Stat(
        median=65.0, low=30.0, high=100.0, valid=2, total=4
    )


def test_a_ratio_to_zero_is_not_a_number():
    assert ratio(3.0, 1.5) == 2.0
    assert math.isnan(ratio(1.0, 0.0))
    assert difference(1.5, 2.0) == -0.5


def _h2load_log(tmp_path, durations_us):
    """An h2load --log-file: start time (µs), HTTP status, duration (µs), one call a line."""
    log = tmp_path / "h2load.log"
    log.write_text("".join(f"{1_700_000_000_000_000 + i}\t200\t{d}\n" for i, d in enumerate(durations_us)))
    return log


def test_percentiles_are_calls_from_the_log_in_ms(tmp_path):
    # 1000 calls of 1..1000 µs, shuffled: the p-th percentile is the call ranked p·n.
    durations = [(i * 7919) % 1000 + 1 for i in range(1000)]
    assert sorted(durations) == list(range(1, 1001))
    latencies = load.latencies_from_log(_h2load_log(tmp_path, durations))
    assert latencies == load.Latencies(p50_ms=0.5, p99_ms=0.99, p999_ms=0.999)


def test_percentiles_are_measured_calls_not_interpolations(tmp_path):
    # 99 fast calls and one slow one: p99 is the 99th call (fast), p99.9 the slow one itself.
    latencies = load.latencies_from_log(_h2load_log(tmp_path, [100] * 99 + [50_000]))
    assert latencies == load.Latencies(p50_ms=0.1, p99_ms=0.1, p999_ms=50.0)


def test_one_call_is_every_percentile(tmp_path):
    assert load.latencies_from_log(_h2load_log(tmp_path, [2500])) == load.Latencies(2.5, 2.5, 2.5)


def test_an_empty_log_is_an_error(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("")
    with pytest.raises(RuntimeError, match="empty"), pytest.warns(UserWarning):
        load.latencies_from_log(log)


@pytest.mark.parametrize("count", [1000, 2000, 10_000])
def test_p999_of_a_round_count_is_the_call_ranked_at_999_per_mille(count):
    ordered = np.arange(1, count + 1)
    assert load.nearest_rank(ordered, 999) == count * 999 // 1000
    assert load.nearest_rank(ordered, 500) == count // 2


def test_paired_may_take_another_key_from_the_second_series():
    runs = [
        run("hop", "via gateway", 1, 40, cpu_us_gateway=30.0),
        run("hop", "via HAProxy", 1, 40, cpu_us_haproxy=20.0),
        run("hop", "via gateway", 2, 40, cpu_us_gateway=20.0),
        run("hop", "via HAProxy", 2, 40, cpu_us_haproxy=20.0),
    ]
    gateway, haproxy = Selection("hop", "via gateway", 40), Selection("hop", "via HAProxy", 40)
    assert paired(runs, gateway, haproxy, "cpu_us_gateway", ratio, "cpu_us_haproxy") == Stat(1.25, 1.0, 1.5, 2, 2)
