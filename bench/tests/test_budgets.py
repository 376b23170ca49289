"""budgets.py: each SPEC §11 budget judged from runs with known values, at its boundary."""

from __future__ import annotations

import operator

import pytest

from helpers import run
from notesuite_bench import budgets
from notesuite_bench.budgets import FAIL, INVALID, NOT_RUN, PASS, Limit
from notesuite_bench.stats import Stat

ALL = {"health", "hop", "footprint"}


def one(value: float) -> Stat:
    return Stat.of([value], total=1)


def find(judged: list[budgets.Budget], budget: str, subject: str) -> budgets.Budget:
    matches = [b for b in judged if b.budget.startswith(budget) and b.subject == subject]
    assert len(matches) == 1, f"{budget!r} for {subject!r}: {matches}"
    return matches[0]


@pytest.mark.parametrize(
    ("limit", "value", "verdict"),
    [
        (Limit(operator.le, 15, "µs"), 15.0, PASS),
        (Limit(operator.le, 15, "µs"), 15.01, FAIL),
        (Limit(operator.lt, 10, "MB"), 9.99, PASS),
        (Limit(operator.lt, 10, "MB"), 10.0, FAIL),
        (Limit(operator.ge, 1.3, "×", 2), 1.3, PASS),
        (Limit(operator.ge, 1.3, "×", 2), 1.299, FAIL),
    ],
)
def test_a_limit_passes_up_to_its_bound_and_fails_past_it(limit, value, verdict):
    assert limit.judge("budget", "subject", one(value)).verdict == verdict


def test_a_limit_is_judged_on_the_median():
    judged = Limit(operator.le, 15, "µs").judge("b", "s", Stat.of([14.0, 15.0, 40.0], total=3))
    assert (judged.verdict, judged.measured) == (PASS, "15.0 (14.0–40.0) µs")


def test_no_valid_run_or_an_invalid_one_is_invalid_not_a_pass():
    limit = Limit(operator.le, 15, "µs")
    assert limit.judge("b", "s", None) == budgets.Budget("b", "s", "no valid run", INVALID)
    partial = limit.judge("b", "s", Stat.of([1.0, 2.0], total=3))
    assert (partial.verdict, partial.measured) == (INVALID, "1.5 (1.0–2.0) µs; 1 of 3 runs invalid")


def _hop_runs(gateway_cpu_us: list[float], via_p99: float, direct_p99: float) -> list:
    runs = []
    for round_, cpu in enumerate(gateway_cpu_us, start=1):
        for method in ("GetNote", "CreateNote"):
            runs.append(run("hop", f"{method} via gateway", round_, 40, cpu_us_gateway=cpu, p99_ms=via_p99))
            runs.append(run("hop", f"{method} direct", round_, 40, p99_ms=direct_p99))
    return runs


def test_gateway_cpu_budget_at_its_boundary():
    at_bound = budgets.evaluate(_hop_runs([14.0, 15.0, 16.0], 1.0, 1.0), False, ALL, [])
    assert find(at_bound, "gateway ≤ 15 µs CPU", "GetNote @40").verdict == PASS
    past = budgets.evaluate(_hop_runs([14.0, 15.1, 16.0], 1.0, 1.0), False, ALL, [])
    assert find(past, "gateway ≤ 15 µs CPU", "GetNote @40").verdict == FAIL


def test_added_p99_is_via_gateway_minus_direct():
    # 0.25 ms and 0.75 ms are exact in binary: the difference sits on the bound exactly.
    judged = budgets.evaluate(_hop_runs([10.0], via_p99=0.75, direct_p99=0.25), False, ALL, [])
    added = find(judged, "gateway adds ≤ 0.5 ms p99", "CreateNote @40")
    assert (added.verdict, added.measured) == (PASS, "0.50 ms")
    judged = budgets.evaluate(_hop_runs([10.0], via_p99=0.875, direct_p99=0.25), False, ALL, [])
    assert find(judged, "gateway adds ≤ 0.5 ms p99", "CreateNote @40").verdict == FAIL


def _health_runs(ours_rps: float, go_rps: float, ours_p99: float, go_p99: float) -> list:
    runs = []
    for service in budgets.NOTESUITE_SERVICES:
        for in_flight in (40, 1000):
            runs.append(run("health", service, 1, in_flight, rps=ours_rps, p99_ms=ours_p99))
    for in_flight in (40, 1000):
        runs.append(run("health", budgets.GRPC_GO, 1, in_flight, rps=go_rps, p99_ms=go_p99))
    return runs


def test_throughput_budget_is_the_ratio_to_grpc_go():
    judged = budgets.evaluate(_health_runs(130.0, 100.0, 1.0, 1.0), True, ALL, [])
    assert find(judged, "req/s ≥ 1.3×", "notesuite gateway Health/Check @40").verdict == PASS
    judged = budgets.evaluate(_health_runs(129.9, 100.0, 1.0, 1.0), True, ALL, [])
    slow = find(judged, "req/s ≥ 1.3×", "notesuite gateway Health/Check @40")
    assert (slow.verdict, slow.measured) == (FAIL, "1.30 ×")


def test_tail_budget_compares_with_grpc_gos_p99():
    judged = budgets.evaluate(_health_runs(1.0, 1.0, ours_p99=2.0, go_p99=2.0), True, ALL, [])
    tail = find(judged, "p99 at 1,000 in flight", "notesuite users Health/Check @1000")
    assert (tail.verdict, tail.measured) == (PASS, "2.00 ms vs grpc-go 2.00 ms")
    judged = budgets.evaluate(_health_runs(1.0, 1.0, ours_p99=2.01, go_p99=2.0), True, ALL, [])
    assert find(judged, "p99 at 1,000 in flight", "notesuite users Health/Check @1000").verdict == FAIL


def test_comparisons_with_grpc_go_are_not_run_without_peers():
    judged = budgets.evaluate(_health_runs(130.0, 100.0, 1.0, 1.0), False, ALL, [])
    skipped = find(judged, "req/s ≥ 1.3×", "notesuite notes Health/Check @40")
    assert (skipped.verdict, skipped.measured) == (NOT_RUN, "peers skipped: nothing to compare with")


def test_an_invalid_grpc_go_run_makes_the_comparison_invalid():
    runs = _health_runs(130.0, 100.0, 1.0, 1.0)
    runs[-2].reject("h2load: 3 failed")  # grpc-go @40
    judged = budgets.evaluate(runs, True, ALL, [])
    # No valid pair in the one round: the budget cannot pass on the other runs alone.
    assert find(judged, "req/s ≥ 1.3×", "notesuite users Health/Check @40").verdict == INVALID


def test_footprint_budgets():
    runs = [
        run("footprint", "notesuite users", idle_rss_mb=9.9, kb_per_connection=30.0, startup_ms=49.9),
        run("footprint", "notesuite notes", idle_rss_mb=10.0, kb_per_connection=30.1, startup_ms=50.0),
    ]
    judged = budgets.evaluate(runs, False, ALL, [])
    assert [find(judged, b, "notesuite users").verdict for b in ("idle RSS", "≤ 30 KB", "first health")] == [PASS] * 3
    assert [find(judged, b, "notesuite notes").verdict for b in ("idle RSS", "≤ 30 KB", "first health")] == [FAIL] * 3
    # No run at all for the gateway.
    assert find(judged, "idle RSS", "notesuite gateway").verdict == INVALID


def test_a_scenario_not_selected_is_not_run():
    judged = budgets.evaluate([], True, {"health"}, [])
    assert {b.verdict for b in judged if b.budget.startswith(("gateway", "idle RSS"))} == {NOT_RUN}


def _peer_runs(gateway_cpu_us: float, proxy_cpu_us: float, proxies: tuple[str, ...]) -> list:
    runs = [run("hop", "GetNote via gateway", 1, 40, cpu_us_gateway=gateway_cpu_us)]
    runs += [run("hop", f"GetNote via {name}", 1, 40, **{f"cpu_us_{name.lower()}": proxy_cpu_us}) for name in proxies]
    return runs


def test_the_gateway_may_cost_as_much_as_haproxy_but_must_cost_less_than_nginx_and_envoy():
    judged = budgets.evaluate(_peer_runs(20.0, 20.0, ("HAProxy", "nginx", "Envoy")), False, ALL, [])
    assert find(judged, "gateway CPU per forwarded GetNote", "GetNote @40, gateway ÷ HAProxy").verdict == PASS
    assert find(judged, "gateway CPU per forwarded GetNote", "GetNote @40, gateway ÷ nginx").verdict == FAIL
    cheaper = budgets.evaluate(_peer_runs(19.0, 20.0, ("Envoy",)), False, ALL, [])
    envoy = find(cheaper, "gateway CPU per forwarded GetNote", "GetNote @40, gateway ÷ Envoy")
    assert (envoy.verdict, envoy.measured) == (PASS, "0.95 ×")


def test_a_proxy_that_was_not_run_has_no_comparison_of_its_own():
    judged = budgets.evaluate(_peer_runs(20.0, 20.0, ("Envoy",)), False, ALL, [])
    assert not [b for b in judged if b.subject.endswith("gateway ÷ nginx")]
