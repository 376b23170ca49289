"""The performance budgets of SPEC §11, judged from one benchmark run's medians."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from . import proxies
from .measure import NotRun, Run
from .scenarios import footprint, health, hop, postgres, streaming
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
        *_streaming(runs, with_peers, streaming.NAME in scenarios, not_run),
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
    return budgets + _hop_peers(runs, ran)


# SPEC §11: less CPU per forwarded call than nginx and Envoy, as little as HAProxy.
PEER_COMPARE = {"HAProxy": operator.le, "nginx": operator.lt, "Envoy": operator.lt}


def _hop_peers(runs: list[Run], ran: bool) -> list[Budget]:
    """The gateway's CPU per forwarded GetNote ÷ each proxy's, round by round, at each load. A
    proxy that was not installed is listed as not run by the scenario."""
    budgets = []
    for load in hop.LOADS:
        gateway = Selection(hop.NAME, hop.series_name(hop.PROXIED_METHOD, hop.VIA_GATEWAY), load.in_flight)
        for kind in proxies.KINDS:
            subject = f"{hop.PROXIED_METHOD} @{load.in_flight}, gateway ÷ {kind.name}"
            if not ran:
                budgets.append(Budget(hop.PEER_BUDGET, subject, _why_not(ran), NOT_RUN))
                continue
            proxy = Selection(hop.NAME, hop.series_name(hop.PROXIED_METHOD, kind.path), load.in_flight)
            if not proxy.runs(runs):
                continue
            cpu = paired(runs, gateway, proxy, "cpu_us_gateway", ratio, f"cpu_us_{kind.label}")
            budgets.append(Limit(PEER_COMPARE[kind.name], 1.0, "×", 2).judge(hop.PEER_BUDGET, subject, cpu))
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


def _streaming(runs: list[Run], with_peers: bool, ran: bool, not_run: list[NotRun]) -> list[Budget]:
    """KB per WatchNotes stream (grpc-go's Health/Watch stream beside it), the fan-out's p99
    on SQLite and across PostgreSQL replicas, and ImportNotes over each bulk insert, round by
    round. Parts the scenario listed as not run (no PostgreSQL) are left to that listing."""
    skipped = {item.scenario for item in not_run}
    judged = []
    go = stat(runs, Selection(streaming.NAME, streaming.PEER_WATCH[GRPC_GO]), "kb_per_stream")
    if go is not None:
        note = f"; grpc-go Health/Watch {go.text(1)} KB"
    else:
        note = "; grpc-go: " + ("no valid run" if with_peers else "peers skipped")
    for series, backend in ((streaming.WATCH_SQLITE, "SQLite"), (streaming.WATCH_POSTGRES, "PostgreSQL")):
        subject = f"notes WatchNotes on {backend} ({_streams(runs)} streams)"
        if series == streaming.WATCH_POSTGRES and f"{streaming.NAME}: WatchNotes across two replicas" in skipped:
            continue
        if not ran:
            judged.append(Budget(streaming.MEMORY_BUDGET, subject, _why_not(ran), NOT_RUN))
            continue
        ours = stat(runs, Selection(streaming.NAME, series), "kb_per_stream")
        judged.append(Limit(operator.le, 10, "KB").judge(streaming.MEMORY_BUDGET, subject, ours, note))
    for series in (streaming.FANOUT_SQLITE, streaming.FANOUT_ACROSS):
        subject = f"CreateNote → {_streams(runs)} watchers, {series}"
        if series == streaming.FANOUT_ACROSS and f"{streaming.NAME}: WatchNotes across two replicas" in skipped:
            continue
        if not ran:
            judged.append(Budget(streaming.FANOUT_BUDGET, subject, _why_not(ran), NOT_RUN))
            continue
        p99 = stat(runs, Selection(streaming.NAME, series), "p99_ms")
        judged.append(Limit(operator.le, 100, "ms").judge(streaming.FANOUT_BUDGET, subject, p99))
    for ours, baseline in streaming.IMPORT_BASELINES:
        subject = f"{ours} ÷ {baseline}"
        if ours == streaming.IMPORT_POSTGRES and f"{streaming.NAME}: ImportNotes on PostgreSQL" in skipped:
            continue
        if not ran:
            judged.append(Budget(streaming.IMPORT_BUDGET, subject, _why_not(ran), NOT_RUN))
            continue
        ratio_stat = paired(
            runs, Selection(streaming.NAME, ours), Selection(streaming.NAME, baseline), "notes_per_s", ratio
        )
        judged.append(Limit(operator.ge, 0.8, "×", 2).judge(streaming.IMPORT_BUDGET, subject, ratio_stat))
    return judged


def _streams(runs: list[Run]) -> str:
    counts = {int(run.values["streams"]) for run in runs if run.scenario == streaming.NAME and "streams" in run.values}
    return ", ".join(f"{count:,}" for count in sorted(counts)) or "N"


def _why_not(ran: bool) -> str:
    return "peers skipped: nothing to compare with" if ran else "scenario not selected"
