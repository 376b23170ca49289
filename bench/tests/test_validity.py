"""validity.py and the cli's use of it: which problems fail a smoke run and which a full run."""

from __future__ import annotations

import json

import pytest

from helpers import run
from notesuite_bench import cli, validity
from notesuite_bench.context import Context, Progress
from notesuite_bench.load import Load
from notesuite_bench.measure import Run, RunSpec
from notesuite_bench.scenarios import telemetry
from notesuite_bench.validity import Problem, decide


def test_an_environmental_problem_is_reported_in_a_smoke_run_and_fatal_in_a_full_run():
    runs = [run("telemetry", "exporting (OTLP)", 1, 40, environmental=("no trace export",))]
    smoke = decide(runs, [], smoke=True)
    assert smoke.passed
    assert smoke.tolerated == ("telemetry 'exporting (OTLP)' round 1 @40: no trace export",)
    full = decide(runs, [], smoke=False)
    assert not full.passed
    assert full.failures == ("telemetry 'exporting (OTLP)' round 1 @40: no trace export",)
    assert full.tolerated == ()


def test_any_other_problem_fails_a_smoke_run_too():
    runs = [
        run("hop", "GetNote direct", 1, 40, environmental=("slow",)),
        run("hop", "GetNote direct", 2, 40, problems=("h2load: no call succeeded",)),
    ]
    verdict = decide(runs, [], smoke=True)
    assert verdict.failures == ("hop 'GetNote direct' round 2 @40: h2load: no call succeeded",)
    assert verdict.tolerated == ("hop 'GetNote direct' round 1 @40: slow",)


def test_harness_errors_fail_both_modes():
    for smoke in (True, False):
        assert decide([], ["health: RuntimeError('boom')"], smoke).failures == ("health: RuntimeError('boom')",)


def test_a_scenario_that_made_no_run_fails_both_modes():
    runs = [run("health", "notesuite users", 1, 40)]
    for smoke in (True, False):
        verdict = decide(runs, [], smoke, scenarios=["health", "footprint"])
        assert verdict.failures == ("footprint: no run was made",)


def test_clean_runs_pass_both_modes():
    runs = [run("footprint", "notesuite users"), run("health", "grpc-go", 2, 1000)]
    for smoke in (True, False):
        assert decide(runs, [], smoke, scenarios=["health", "footprint"]) == validity.Verdict((), ())


def test_an_environmental_problem_says_so_wherever_it_is_printed():
    assert str(Problem("short run", environmental=True)) == "short run (needs a quiet machine or a long run)"
    assert str(Problem("h2load: 1 failed")) == "h2load: 1 failed"


# --- Where the problems come from ------------------------------------------------------------


def _context(runner) -> Context:
    fields = dict.fromkeys(("repo_root", "notesuite", "peers", "stubs", "work_dir", "raw_dir"))
    return Context(**fields, runner=runner, rounds=1, connections=1, startup_repeats=1, progress=Progress())


class _Sink:
    def counts(self) -> dict[str, int]:
        return {"traces_exports": 0, "traces_bytes": 0}


class _Runner:
    def run(self, spec: RunSpec) -> Run:
        values = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "p999_ms": 3.0, "cpu_us_notes": 10.0}
        return Run(spec.scenario, spec.series, spec.round, spec.load.in_flight, values=values)


def _spec() -> RunSpec:
    return RunSpec(telemetry.NAME, telemetry.EXPORTING, 1, target=None, load=Load(4, 10), observed=())


def test_no_otlp_export_during_the_run_is_environmental():
    made = telemetry._with_exports(_context(_Runner()), _spec(), _Sink(), exporting=True)
    assert made.problems == [Problem("no trace export reached the OTLP sink during the run", environmental=True)]
    assert made.values["otlp_traces_exports"] == 0.0


def test_a_run_that_raises_is_a_harness_error_which_fails_a_smoke_run():
    class Broken:
        def run(self, spec):
            raise RuntimeError("h2load exited 1")

    made = telemetry._with_exports(_context(Broken()), _spec(), _Sink(), exporting=True)
    assert made.problems == [Problem("harness error: RuntimeError('h2load exited 1')")]
    assert not decide([made], [], smoke=True).passed


# --- The command line, with fake scenarios -----------------------------------------------------


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """Runs cli.main with the scenarios given, no processes and no pinning; returns its exit code."""

    class Nothing:
        def __init__(self, *args):
            pass

        def close(self):
            pass

    binary = tmp_path / "notesuite"
    binary.write_text("")
    monkeypatch.setattr(cli, "_preflight", lambda args: None)
    monkeypatch.setattr(cli, "pin_this_thread", lambda core: None)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    monkeypatch.setattr(cli, "Notesuite", Nothing)
    monkeypatch.setattr(cli, "Stubs", Nothing)

    def main(scenarios: dict, *flags: str) -> int:
        monkeypatch.setattr(cli, "MEASURED", scenarios)
        only = [arg for name in scenarios for arg in ("--only", name)]
        return cli.main(["--binary", str(binary), "--out", str(tmp_path / "out"), *only, *flags])

    return main


def _telemetry_runs(*problems: Problem):
    def scenario(context):
        made = [Run(telemetry.NAME, variant, 1, 40, values={"rps": 1000.0}) for variant in telemetry.VARIANTS]
        made[-1].problems += problems
        return made

    return {telemetry.NAME: scenario}


def test_smoke_passes_on_an_environmental_problem_and_says_a_full_run_would_not(bench, capsys, tmp_path):
    assert bench(_telemetry_runs(Problem("no trace export", environmental=True)), "--smoke") == 0
    out = capsys.readouterr().out
    assert "would be invalid in a full run" in out
    assert "- telemetry 'exporting (OTLP)' round 1 @40: no trace export" in out
    assert (tmp_path / "out/telemetry.png").stat().st_size > 0
    document = json.loads((tmp_path / "out/results.json").read_text())
    assert document["runs"][-1]["problems"] == [{"text": "no trace export", "environmental": True}]
    assert document["runs"][-1]["valid"] is False


def test_a_full_run_fails_on_the_same_problem(bench, capsys):
    assert bench(_telemetry_runs(Problem("no trace export", environmental=True))) == 1
    assert "- telemetry 'exporting (OTLP)' round 1 @40: no trace export" in capsys.readouterr().err


def test_smoke_fails_on_a_real_problem(bench):
    assert bench(_telemetry_runs(Problem("h2load: 3 failed")), "--smoke") == 1


def test_smoke_fails_when_a_scenario_raises(bench, capsys):
    def crash(context):
        raise RuntimeError("notes did not start")

    assert bench({telemetry.NAME: crash}, "--smoke") == 1
    err = capsys.readouterr().err
    assert "telemetry: RuntimeError('notes did not start')" in err
    # It made no run either, and so wrote no plot.
    assert "telemetry: no run was made" in err
    assert "telemetry.png was not written" in err


def test_smoke_fails_when_a_plot_is_not_written(bench, capsys, monkeypatch):
    monkeypatch.setattr(cli.plots, "write_all", lambda runs, scenarios, out_dir: [])
    assert bench(_telemetry_runs(), "--smoke") == 1
    assert "telemetry.png was not written" in capsys.readouterr().err


def test_a_clean_smoke_run_passes(bench, capsys):
    assert bench(_telemetry_runs(), "--smoke") == 0
    assert "would be invalid" not in capsys.readouterr().out


def test_smoke_fails_when_setting_up_fails(bench, capsys, monkeypatch):
    def keygen_fails(binary, work_dir):
        raise RuntimeError("keygen exited 1")

    monkeypatch.setattr(cli, "Notesuite", keygen_fails)
    assert bench(_telemetry_runs(), "--smoke") == 1
    assert "setting up: RuntimeError('keygen exited 1')" in capsys.readouterr().err
