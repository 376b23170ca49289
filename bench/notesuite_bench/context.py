"""What every scenario gets: the servers to start, the runner, the settings, progress output."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .measure import NotRun, Run, Runner, RunSpec
from .processes import ProcessGroup
from .services import Notesuite, Peers
from .stubs import Stubs


@dataclass
class Progress:
    """One line per measured run, with how far along the whole benchmark is."""

    planned: int = 0
    done: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started_at
        print(f"[{elapsed:6.0f}s] {message}", flush=True)

    def report(self, run: Run) -> None:
        self.done += 1
        self.say(f"({self.done}/{self.planned}) {describe(run)}")


def describe(run: Run) -> str:
    where = f"{run.scenario} r{run.round}"
    if run.in_flight is not None:
        where += f" @{run.in_flight}"
    values = run.values
    if "rps" in values:
        cpu = ", ".join(
            f"{key.removeprefix('cpu_us_')} {value:.1f}" for key, value in values.items() if key.startswith("cpu_us_")
        )
        text = (
            f"{values['rps'] / 1000:7.1f}k req/s  p50 {values['p50_ms']:.2f}  "
            f"p99 {values['p99_ms']:.2f}  p99.9 {values['p999_ms']:.2f} ms  CPU µs/call: {cpu}"
        )
    else:
        text = "  ".join(f"{key} {value:.2f}" for key, value in values.items())
    verdict = "ok" if run.valid else "INVALID: " + "; ".join(map(str, run.problems))
    if run.warnings:
        verdict += "; warning: " + "; ".join(run.warnings)
    return f"{where:22} {run.series:22} {text}  [{verdict}]"


@dataclass
class Context:
    repo_root: Path
    notesuite: Notesuite
    peers: Peers | None
    stubs: Stubs
    runner: Runner
    work_dir: Path
    raw_dir: Path
    rounds: int
    connections: int
    startup_repeats: int
    progress: Progress
    # The PostgreSQL server scenarios create their databases on (pg.py).
    postgres_url: str = ""
    # Markdown a scenario adds to its section of results.md beyond its runs (e.g. a query
    # plan), by scenario name.
    sections: dict[str, str] = field(default_factory=dict)
    # The streaming scenario's scale: WatchNotes streams held on one process, notes per import.
    watch_streams: int = 0
    import_notes: int = 0
    # What a scenario could not measure, and why (listed as not run, budgets NOT RUN).
    not_run: list[NotRun] = field(default_factory=list)

    def process_group(self) -> ProcessGroup:
        return ProcessGroup(self.raw_dir / "logs")

    def measure(self, spec: RunSpec) -> Run:
        return self.guarded(spec.scenario, spec.series, spec.round, spec.load.in_flight, lambda: self.runner.run(spec))

    def guarded(
        self, scenario: str, series: str, round_: int, in_flight: int | None, measure: Callable[[], Run]
    ) -> Run:
        """Runs one measurement; a failure becomes an invalid run (and the benchmark goes on)."""
        try:
            run = measure()
        except Exception as error:  # noqa: BLE001 (a failed run is reported as invalid, and the benchmark goes on)
            traceback.print_exc(file=sys.stderr)
            run = Run(scenario, series, round_, in_flight)
            run.reject(f"harness error: {error!r}")
        self.progress.report(run)
        return run
