"""One measured run: warm up, then drive a target with h2load while counting the CPU time of
the processes serving it, then check that every call of the run succeeded."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import h2probe, load, metrics
from .services import Server
from .validity import Problem

# Lets calls abandoned at the end of the warm-up finish (or be cancelled) before the next run,
# for servers without metrics to tell when they have.
SETTLE_S = 0.3
QUIET_TIMEOUT_S = 10


@dataclass
class Run:
    """One measurement of one series in one round, with everything that makes it invalid
    (validity.py: which of that also fails the benchmark)."""

    scenario: str
    series: str
    round: int
    in_flight: int | None
    values: dict[str, float] = field(default_factory=dict)
    verified_by: str = ""
    problems: list[Problem] = field(default_factory=list)
    # Oddities that do not make the run's numbers wrong, but that the server should not show.
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def reject(self, *texts: str, environmental: bool = False) -> None:
        """Makes the run invalid for each of `texts`; `environmental` when the rule needs a
        quiet machine or a long run (a smoke run then reports it instead of failing)."""
        self.problems += [Problem(text, environmental) for text in texts]


@dataclass(frozen=True)
class NotRun:
    """A measurement SPEC §11 asks for that this benchmark could not make, and why (e.g. no
    PostgreSQL server answered): listed in results.md, its budget NOT RUN."""

    scenario: str
    budget: str
    reason: str


@dataclass(frozen=True)
class Observed:
    """A process whose CPU time is charged to the run's calls (as `cpu_us_<label>` per call)
    and, when it has /metrics, whose count of `method` by status checks the run."""

    label: str
    server: Server
    method: metrics.Method | None = None
    # One of several replicas sharing the calls behind a balancer (itself observed, and checked
    # against h2load's count): any non-OK call of its own makes the run invalid, and its share
    # of the calls is recorded as `share_<label>`.
    replica: bool = False


# Returns None when a real call to the target succeeds, else what went wrong.
Probe = Callable[[], str | None]


class LoadResult(Protocol):
    """What a driver reports of one run of calls (load.H2loadResult is one)."""

    requests_per_s: float
    elapsed_s: float
    succeeded: int
    extra: dict[str, float]

    def problems(self) -> list[str]: ...

    def environmental_problems(self) -> list[str]: ...


class Driver(Protocol):
    """Makes the calls of a run: h2load (load.H2load) unless a scenario needs requests that
    differ from call to call."""

    def run_for(self, duration_s: float) -> LoadResult: ...

    def run_calls(self, calls: int, expected_s: float, log_file: Path) -> LoadResult:
        """Makes exactly `calls` calls, waits for all, and writes one line per call to
        `log_file` with its duration in µs in the third column (as h2load's --log-file)."""
        ...


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    series: str
    round: int
    target: load.Target
    load: load.Load
    observed: tuple[Observed, ...]
    probe: Probe | None = None
    # None: h2load sends target's request body.
    driver: Driver | None = None


@dataclass
class Runner:
    raw_dir: Path
    duration_s: float
    warmup_s: float
    # Fewer calls than this per stream in flight would make a run mostly ramp-up and ramp-down.
    min_calls_per_stream: int = 10

    def run(self, spec: RunSpec) -> Run:
        """Warms up for warmup_s, then makes as many calls as the warm-up's rate says fit in
        duration_s: a count rather than a time, so that h2load abandons no call at the end and
        every call of the measured run must end OK."""
        run = Run(spec.scenario, spec.series, spec.round, spec.load.in_flight)
        counted = [observed for observed in spec.observed if observed.method is not None]
        baseline = {o.label: metrics.scrape(o.server.metrics_address) for o in counted}
        log_offsets = {o.label: o.server.process.log_size() for o in spec.observed}
        driver = spec.driver or load.H2load(spec.target, spec.load)
        warmup = driver.run_for(self.warmup_s)
        before = self._settle(counted)
        cpu_before = {o.label: o.server.process.cpu_seconds() for o in spec.observed}

        calls = max(spec.load.in_flight * self.min_calls_per_stream, round(warmup.requests_per_s * self.duration_s))
        log_file = self.raw_dir / f"{_slug(spec.scenario, spec.series, spec.load.in_flight, spec.round)}.log"
        result = driver.run_calls(calls, self.duration_s, log_file)

        cpu_after = {o.label: o.server.process.cpu_seconds() for o in spec.observed}
        after = self._settle(counted)
        run.values = _values(result, load.latencies_from_log(log_file), cpu_before, cpu_after) | result.extra
        run.values |= self._shares(counted, before, after, result.succeeded)
        run.files.append(load.compress(log_file).name)
        run.reject(*result.problems())
        run.reject(*result.environmental_problems(), environmental=True)
        run.reject(*self._status_problems(counted, before, after, result.succeeded))
        run.warnings += self._leaks(counted, baseline, after)
        run.warnings += _logged_warnings(spec.observed, log_offsets)
        run.verified_by = "server metrics by gRPC status" if counted else "h2load + a probe call"
        if spec.probe is not None and (problem := spec.probe()):
            run.reject(f"probe: {problem}")
        run.reject(*(f"{o.label} exited during the run" for o in spec.observed if o.server.process.exited()))
        return run

    @staticmethod
    def _settle(counted: list[Observed]) -> dict[str, metrics.Scrape]:
        if not counted:
            time.sleep(SETTLE_S)
        return {o.label: metrics.wait_until_quiet(o.server.metrics_address, o.method, QUIET_TIMEOUT_S) for o in counted}

    @staticmethod
    def _status_problems(
        counted: list[Observed], before: dict[str, metrics.Scrape], after: dict[str, metrics.Scrape], succeeded: int
    ) -> list[str]:
        problems = []
        for o in counted:
            by_status = metrics.calls_by_status(before[o.label], after[o.label], o.method)
            # A replica served a share of the calls: only its non-OK calls say something.
            expected = 0 if o.replica else succeeded
            problems += [f"{o.label}: {problem}" for problem in metrics.status_problems(by_status, expected)]
        return problems

    @staticmethod
    def _shares(
        counted: list[Observed], before: dict[str, metrics.Scrape], after: dict[str, metrics.Scrape], succeeded: int
    ) -> dict[str, float]:
        """Each replica's OK calls as a fraction of the run's successful calls."""
        return {
            f"share_{o.label}": metrics.calls_by_status(before[o.label], after[o.label], o.method).get(0, 0)
            / max(succeeded, 1)
            for o in counted
            if o.replica
        }

    @staticmethod
    def _leaks(
        counted: list[Observed], baseline: dict[str, metrics.Scrape], after: dict[str, metrics.Scrape]
    ) -> list[str]:
        warnings = []
        for o in counted:
            leaked = after[o.label].active_calls(o.method) - baseline[o.label].active_calls(o.method)
            if leaked > 0:
                warnings.append(
                    f"{o.label}: rpc_server_active_calls for {o.method.name} stays {leaked} higher "
                    "after the run than before its warm-up, with no call in flight"
                )
        return warnings


def _values(
    result: LoadResult, latencies: load.Latencies, cpu_before: dict[str, float], cpu_after: dict[str, float]
) -> dict[str, float]:
    values = {
        "rps": result.requests_per_s,
        "p50_ms": latencies.p50_ms,
        "p99_ms": latencies.p99_ms,
        "p999_ms": latencies.p999_ms,
        "calls": float(result.succeeded),
        "seconds": result.elapsed_s,
    }
    for label, before in cpu_before.items():
        values[f"cpu_us_{label}"] = (cpu_after[label] - before) * 1e6 / max(result.succeeded, 1)
    return values


def _logged_warnings(observed: tuple[Observed, ...], offsets: dict[str, int]) -> list[str]:
    """Summarizes the WARN and ERROR lines each server logged since its offset (the warm-up
    included: its abandoned calls are where trouble shows)."""
    warnings = []
    for o in observed:
        events: Counter = Counter()
        for line in o.server.process.log_since(offsets[o.label]).splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("level") in ("WARN", "ERROR"):
                cause = f" ({entry['error']})" if "error" in entry else ""
                events[f"{entry['level']} {entry.get('message', '')}{cause}"] += 1
        if events:
            described = "; ".join(f"{count}× {event}" for event, count in events.most_common(3))
            warnings.append(f"{o.label} logged during warm-up and run: {described}")
    return warnings


def health_probe(address: str) -> Probe:
    def probe() -> str | None:
        try:
            answer = h2probe.check_once(address)
        except h2probe.NOT_YET as error:
            return f"health check failed: {error!r}"
        return None if answer.ok else f"health check answered {answer}"

    return probe


def _slug(*parts: object) -> str:
    text = "-".join(str(part) for part in parts if part is not None)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
