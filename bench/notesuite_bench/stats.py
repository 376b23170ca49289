"""Medians with min–max over rounds, from valid runs only."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .measure import Run


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    valid: int
    total: int

    @classmethod
    def of(cls, values: list[float], total: int) -> Stat | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values), total)

    @property
    def complete(self) -> bool:
        return self.valid == self.total

    def text(self, digits: int = 1, scale: float = 1.0) -> str:
        median, low, high = (value * scale for value in (self.median, self.low, self.high))
        if self.valid == 1:
            return f"{median:.{digits}f}"
        return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


@dataclass(frozen=True)
class Selection:
    """The runs of one series at one concurrency in one scenario."""

    scenario: str
    series: str
    in_flight: int | None = None

    def runs(self, runs: Iterable[Run]) -> list[Run]:
        return [
            run
            for run in runs
            if (run.scenario, run.series, run.in_flight) == (self.scenario, self.series, self.in_flight)
        ]


def stat(runs: Iterable[Run], selection: Selection, key: str) -> Stat | None:
    selected = selection.runs(runs)
    values = [run.values[key] for run in selected if run.valid and key in run.values]
    return Stat.of(values, len(selected))


def paired(
    runs: list[Run],
    first: Selection,
    second: Selection,
    key: str,
    combine: Callable[[float, float], float],
    second_key: str | None = None,
) -> Stat | None:
    """combine(first's key, second's second_key (default: key)) round by round, over rounds
    where both runs are valid: the series of a round ran back to back, so drift between rounds
    cancels out."""
    second_key = second_key or key
    by_round = {run.round: run for run in second.runs(runs) if run.valid and second_key in run.values}
    selected = first.runs(runs)
    values = [
        combine(run.values[key], by_round[run.round].values[second_key])
        for run in selected
        if run.valid and key in run.values and run.round in by_round
    ]
    return Stat.of(values, len(selected))


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def difference(a: float, b: float) -> float:
    return a - b
