"""The performance budgets of SPEC §11, judged from one benchmark run's medians."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from .measure import Run
from .scenarios import footprint, health, hop, postgres
from .scenarios.not_yet import NotRun
from .stats import Selection, Stat, difference, paired, ratio, stat

PASS, FAIL, NOT_RUN, INVALID = "PASS", "FAIL", "NOT RUN", "INVALID"
GRPC_GO = "grpc-go"
NOTESUITE_SERVICES = tuple(f"notesuite {name}" for name in health.NOTESUITE_SERVICES)
HOP_LOAD = 40
TAIL_LOAD = 1000


@dataclass(frozen=True)
class Budget:
    budget: str
    subject: str
    measured: str
    verdict: str


@dataclass(frozen=True)
class Limit:
    """`value <compare> bound`, e.g. Limit(operator.le, 15, "µs")."""

    compare: Callable[[float, float], bool]
    bound: float
    unit: str
    digits: int = 1

    def judge(self, budget: str, subject: str, value: Stat | None, note: str = "") -> Budget:
        if value is None:
            return Budget(budget, subject, "no valid run" + note, INVALID)
        measured = f"{value.text(self.digits)} {self.unit}".strip() + note
        if not value.complete:
            invalid = value.total - value.valid
            return Budget(budget, subject, f"{measured}; {invalid} of {value.total} runs invalid", INVALID)
        return Budget(budget, subject, measured, PASS if self.compare(value.median, self.bound) else FAIL)


def evaluate(runs: list[Run], with_peers: bool, scenarios: set[str], not_run: list[NotRun]) -> list[Budget]:
    return [
        *_health(runs, with_peers, health.NAME in scenarios),
        *_hop(runs, hop.NAME in scenarios),
        *_footprint(runs, footprint.NAME in scenarios),
        *_postgres(runs, postgres.NAME in scenarios),
        *(Budget(item.budget, item.scenario, item.reason, NOT_RUN) for item in not_run),
    ]


def _health(runs: list[Run], with_peers: bool, ran: bool) -> list[Budget]:
    throughput = "req/s ≥ 1.3× grpc-go's on one core"
    tail = f"p99 at {TAIL_LOAD:,} in flight ≤ grpc-go's"
    budgets = []
    for service in NOTESUITE_SERVICES:
        for load in health.LOADS:
            subject = f"{service} Health/Check @{load.in_flight}"
            if not (ran and with_peers):
                budgets.append(Budget(throughput, subject, _why_not(ran), NOT_RUN))
                continue
            ours = Selection(health.NAME, service, load.in_flight)
            go = Selection(health.NAME, GRPC_GO, load.in_flight)
            budgets.append(
                Limit(operator.ge, 1.3, "×", 2).judge(throughput, subject, paired(runs, ours, go, "rps", ratio))
            )
        subject = f"{service} Health/Check @{TAIL_LOAD}"
        if not (ran and with_peers):
            budgets.append(Budget(tail, subject, _why_not(ran), NOT_RUN))
            continue
        go_p99 = stat(runs, Selection(health.NAME, GRPC_GO, TAIL_LOAD), "p99_ms")
        if go_p99 is None:
            budgets.append(Budget(tail, subject, "no valid grpc-go run", INVALID))
            continue
        ours_p99 = stat(runs, Selection(health.NAME, service, TAIL_LOAD), "p99_ms")
        note = f" vs grpc-go {go_p99.text(2)} ms"
        budgets.append(Limit(operator.le, go_p99.median, "ms", 2).judge(tail, subject, ours_p99, note))
    return budgets


def _hop(runs: list[Run], ran: bool) -> list[Budget]:
    cpu = "gateway ≤ 15 µs CPU per forwarded call"
    added_p99 = f"gateway adds ≤ 0.5 ms p99 at {HOP_LOAD} in flight"
    budgets = []
    for method in hop.METHODS:
        subject = f"{method} @{HOP_LOAD}"
        if not ran:
            budgets += [
                Budget(cpu, subject, _why_not(ran), NOT_RUN),
                Budget(added_p99, subject, _why_not(ran), NOT_RUN),
            ]
            continue
        via = Selection(hop.NAME, hop.series_name(method, hop.VIA_GATEWAY), HOP_LOAD)
        direct = Selection(hop.NAME, hop.series_name(method, hop.DIRECT), HOP_LOAD)
        budgets.append(Limit(operator.le, 15, "µs").judge(cpu, subject, stat(runs, via, "cpu_us_gateway")))
        added = paired(runs, via, direct, "p99_ms", difference)
        budgets.append(Limit(operator.le, 0.5, "ms", 2).judge(added_p99, subject, added))
    return budgets


def _footprint(runs: list[Run], ran: bool) -> list[Budget]:
    checks = (
        ("idle RSS < 10 MB per service", "idle_rss_mb", Limit(operator.lt, 10, "MB")),
        ("≤ 30 KB per idle connection", "kb_per_connection", Limit(operator.le, 30, "KB")),
        ("first health check < 50 ms after exec", "startup_ms", Limit(operator.lt, 50, "ms")),
    )
    budgets = []
    for budget, key, limit in checks:
        for service in NOTESUITE_SERVICES:
            if not ran:
                budgets.append(Budget(budget, service, _why_not(ran), NOT_RUN))
                continue
            budgets.append(limit.judge(budget, service, stat(runs, Selection(footprint.NAME, service), key)))
    return budgets


def _postgres(runs: list[Run], ran: bool) -> list[Budget]:
    """CreateNote through the gateway ≥ 0.7× pgbench's single-row insert rate, at each
    concurrency, round by round."""
    budget = "CreateNote on PostgreSQL ≥ 0.7× the database's single-row insert rate (pgbench)"
    judged = []
    for load in postgres.WRITE_LOADS:
        subject = f"{postgres.CREATE_NOTE} @{load.in_flight}"
        if not ran:
            judged.append(Budget(budget, subject, _why_not(ran), NOT_RUN))
            continue
        ours = Selection(postgres.NAME, postgres.CREATE_NOTE, load.in_flight)
        database = Selection(postgres.NAME, postgres.PGBENCH_SINGLE_ROW, load.in_flight)
        judged.append(
            Limit(operator.ge, 0.7, "×", 2).judge(budget, subject, paired(runs, ours, database, "rps", ratio))
        )
    return judged


def _why_not(ran: bool) -> str:
    return "peers skipped: nothing to compare with" if ran else "scenario not selected"
