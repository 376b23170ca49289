"""Runs built by hand for the unit tests."""

from __future__ import annotations

from notesuite_bench.measure import Run


def run(
    scenario: str,
    series: str,
    round_: int = 1,
    in_flight: int | None = None,
    problems: tuple[str, ...] = (),
    environmental: tuple[str, ...] = (),
    **values: float,
) -> Run:
    made = Run(scenario, series, round_, in_flight, values=dict(values))
    made.reject(*problems)
    made.reject(*environmental, environmental=True)
    return made
