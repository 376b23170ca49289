"""What makes a run invalid, and which of that fails the benchmark.

Every problem makes its run invalid: its numbers stay out of every median, in any mode. Whether
it also fails the benchmark depends on the mode. A full run fails on any problem. A smoke run
(`--smoke`, the last step of scripts/test) checks that the harness works on whatever machine
runs the tests: a problem that only says the machine was busy or the run short is
`environmental`, and is reported there as what a full run would reject; every other problem, a
scenario that raised and a scenario that made no run still fail it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .measure import Run

ENVIRONMENTAL_NOTE = "needs a quiet machine or a long run"


@dataclass(frozen=True)
class Problem:
    text: str
    # The rule needs a quiet machine or a long run to hold: breaking it says nothing about
    # whether the harness or the server works.
    environmental: bool = False

    def __str__(self) -> str:
        return f"{self.text} ({ENVIRONMENTAL_NOTE})" if self.environmental else self.text


def environmental(text: str) -> Problem:
    return Problem(text, environmental=True)


@dataclass(frozen=True)
class Verdict:
    # Each one fails the benchmark.
    failures: tuple[str, ...]
    # Smoke runs only: problems a full run would reject, reported and tolerated.
    tolerated: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def decide(runs: Iterable[Run], errors: Iterable[str], smoke: bool, scenarios: Iterable[str] = ()) -> Verdict:
    """Judges a whole benchmark: `errors` are the harness's own (a scenario that raised, an
    output not written), `scenarios` the measured scenarios that must each have made a run."""
    runs = list(runs)
    failures = list(errors)
    failures += [f"{name}: no run was made" for name in scenarios if not any(run.scenario == name for run in runs)]
    tolerated = []
    for run in runs:
        for problem in run.problems:
            line = f"{where(run)}: {problem.text}"
            if smoke and problem.environmental:
                tolerated.append(line)
            else:
                failures.append(line)
    return Verdict(tuple(failures), tuple(tolerated))


def where(run: Run) -> str:
    text = f"{run.scenario} {run.series!r} round {run.round}"
    return text if run.in_flight is None else f"{text} @{run.in_flight}"
