"""The benchmark's command line: runs the chosen scenarios and writes results.md, results.json
and one plot per scenario."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import budgets, pg, plots, proxies, report, validity
from .context import Context, Progress
from .measure import NotRun, Run, Runner
from .processes import LOAD_CORE, SERVER_CORE, pin_this_thread
from .scenarios import footprint, health, hop, overload, postgres, streaming, telemetry
from .services import Notesuite, Peers
from .stubs import Stubs

REPO_ROOT = Path(__file__).resolve().parents[2]
MEASURED = {
    health.NAME: health.run,
    hop.NAME: hop.run,
    telemetry.NAME: telemetry.run,
    footprint.NAME: footprint.run,
    postgres.NAME: postgres.run,
    streaming.NAME: streaming.run,
    overload.NAME: overload.run,
}
SCENARIOS = tuple(MEASURED)
# Per measured h2load run, on top of warm-up and duration: settling, reading /proc and
# /metrics, parsing and compressing the log.
RUN_OVERHEAD_S = 1.0
SMOKE = {
    "duration": 0.5,
    "warmup": 0.3,
    "rounds": 1,
    "connections": 100,
    "startup_repeats": 3,
    "watch_streams": 300,
    "import_notes": 500,
}
DEFAULTS = {
    "duration": 10.0,
    "warmup": 2.0,
    "rounds": 3,
    "connections": 1000,
    "startup_repeats": 10,
    "watch_streams": 10_000,
    "import_notes": 20_000,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Benchmarks notesuite side by side with reference gRPC servers (SPEC §11).",
    )
    parser.add_argument("--binary", type=Path, default=REPO_ROOT / "target/release/notesuite")
    parser.add_argument(
        "--peers",
        type=Path,
        default=os.environ.get("NOTESUITE_PEERS_DIR") or None,
        help="folder with the reference servers (default: $NOTESUITE_PEERS_DIR); without it they are skipped",
    )
    parser.add_argument("--duration", type=float, help=f"seconds per measured run (default {DEFAULTS['duration']:g})")
    parser.add_argument(
        "--warmup", type=float, help=f"seconds of the warm-up run before each (default {DEFAULTS['warmup']:g})"
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {DEFAULTS['rounds']})")
    parser.add_argument(
        "--connections",
        type=int,
        help=f"idle connections in the footprint scenario (default {DEFAULTS['connections']})",
    )
    parser.add_argument(
        "--startup-repeats",
        type=int,
        help=f"start-ups timed per server and round (default {DEFAULTS['startup_repeats']})",
    )
    parser.add_argument(
        "--watch-streams",
        type=int,
        help=f"WatchNotes streams held on one notes process in the streaming scenario "
        f"(default {DEFAULTS['watch_streams']:,})",
    )
    parser.add_argument(
        "--import-notes",
        type=int,
        help=f"notes per ImportNotes call in the streaming scenario (default {DEFAULTS['import_notes']:,})",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--postgres",
        default=pg.default_server(),
        help="PostgreSQL server for the postgres and streaming scenarios, which create (and drop) databases of "
        "their own there "
        "(default: $NOTESUITE_TEST_POSTGRES or %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="results folder (default bench-results/<UTC timestamp>)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a short check that the harness works: 1 round of short runs, fewer connections and start-ups; "
        "what only a quiet machine or a long run can pass is reported, not fatal; "
        "results go to a temporary folder, removed when the check passed",
    )
    args = parser.parse_args(argv)
    for key, default in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    args.scenarios = [name for name in SCENARIOS if not args.only or name in args.only]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _raise_open_files_limit(args.connections + 1024)
    problem = _preflight(args)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    # Before anything starts a thread: every thread of the harness stays on the load core.
    pin_this_thread(LOAD_CORE)
    signal.signal(signal.SIGTERM, _interrupt)

    started = datetime.now(UTC)
    out_dir = args.out or (
        Path(tempfile.mkdtemp(prefix="notesuite-bench-smoke-"))
        if args.smoke
        else REPO_ROOT / "bench-results" / started.strftime("%Y-%m-%dT%H-%M-%SZ")
    )
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="notesuite-bench-"))
    progress = Progress()
    with_peers = args.peers is not None
    if not with_peers:
        print(
            "\n*** PEERS SKIPPED: no --peers / NOTESUITE_PEERS_DIR: notesuite is measured alone and\n"
            "*** every budget that compares with grpc-go is NOT RUN.\n",
            flush=True,
        )
    progress.planned = _planned_runs(args, with_peers)
    progress.say(f"results: {out_dir}")
    progress.say(f"{progress.planned} measurements planned, about {_estimate_s(args, with_peers) / 60:.0f} min")

    runs: list[Run] = []
    errors: list[str] = []
    sections: dict[str, str] = {}
    not_run: list[NotRun] = []
    stubs = None
    outcome = 0
    try:
        stubs = Stubs(REPO_ROOT / "proto")
        context = Context(
            repo_root=REPO_ROOT,
            notesuite=Notesuite(args.binary.resolve(), work_dir),
            peers=Peers(args.peers.resolve()) if with_peers else None,
            stubs=stubs,
            runner=Runner(raw_dir, args.duration, args.warmup, min_calls_per_stream=1 if args.smoke else 10),
            work_dir=work_dir,
            raw_dir=raw_dir,
            rounds=args.rounds,
            connections=args.connections,
            startup_repeats=args.startup_repeats,
            progress=progress,
            postgres_url=args.postgres,
            sections=sections,
            watch_streams=args.watch_streams,
            import_notes=args.import_notes,
            not_run=not_run,
        )
        for name in args.scenarios:
            if name not in MEASURED:
                continue
            progress.say(f"== scenario {name}")
            try:
                runs += MEASURED[name](context)
            except Exception as error:  # noqa: BLE001 (one broken scenario must not hide the others)
                traceback.print_exc()
                errors.append(f"{name}: {error!r}")
            _write_results(args, out_dir, started, runs, errors, sections, not_run, final=False)
    except KeyboardInterrupt:
        errors.append("interrupted")
        outcome = 130
    except Exception as error:  # noqa: BLE001 (said below, with every other failure)
        # Setting up failed (the binary's keygen, the stubs): no scenario ran.
        traceback.print_exc()
        errors.append(f"setting up: {error!r}")
    finally:
        if stubs is not None:
            stubs.close()
        shutil.rmtree(work_dir, ignore_errors=True)

    try:
        markdown = _write_results(args, out_dir, started, runs, errors, sections, not_run, final=True)
    except Exception as error:  # noqa: BLE001 (said below, with every other failure)
        traceback.print_exc()
        markdown = ""
        errors.append(f"writing the results: {error!r}")
    print("\n" + markdown, flush=True)
    errors += _missing_outputs(args, out_dir)
    measured = [name for name in args.scenarios if name in MEASURED]
    verdict = validity.decide(runs, errors, args.smoke, measured)
    if verdict.tolerated:
        print(
            f"bench: would be invalid in a full run ({validity.ENVIRONMENTAL_NOTE}; not fatal in a smoke run):",
            *(f"  - {line}" for line in verdict.tolerated),
            sep="\n",
            flush=True,
        )
    if not verdict.passed:
        print(
            f"bench: FAILED ({len(verdict.failures)}); results in {out_dir}:",
            *(f"  - {line}" for line in verdict.failures),
            sep="\n",
            file=sys.stderr,
        )
        return outcome or 1
    if args.smoke and args.out is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        print("bench: smoke run passed (its temporary results folder was removed)")
    else:
        print(f"bench: results in {out_dir}")
    return 0


def _missing_outputs(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The result files this run should have written and did not: results.md (which has a
    table for every scenario chosen), results.json, and a plot for every measured scenario
    chosen (plots.write_all skips a scenario that made no run)."""
    expected = [out_dir / "results.md", out_dir / "results.json"]
    expected += [out_dir / f"{name}.png" for name in args.scenarios if name in MEASURED]
    return [f"{path.name} was not written" for path in expected if not path.is_file() or path.stat().st_size == 0]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def _preflight(args: argparse.Namespace) -> str | None:
    if not {LOAD_CORE, SERVER_CORE} <= os.sched_getaffinity(0):
        allowed = sorted(os.sched_getaffinity(0))
        return f"needs cores {LOAD_CORE} (load) and {SERVER_CORE} (server); this process may use {allowed}"
    if not args.binary.is_file():
        return f"no notesuite binary at {args.binary} (cargo build --release -p notesuite, or --binary)"
    for tool in ("h2load", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} not found (scripts/bench installs it)"
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < args.connections + 64:
        return f"the open-files limit is too low for {args.connections} connections (ulimit -n)"
    return None


def _planned_runs(args: argparse.Namespace, with_peers: bool) -> int:
    planned = {
        health.NAME: health.planned_runs(args.rounds, with_peers),
        hop.NAME: hop.planned_runs(args.rounds),
        telemetry.NAME: telemetry.planned_runs(args.rounds),
        footprint.NAME: footprint.planned_runs(args.rounds, with_peers),
        postgres.NAME: postgres.planned_runs(args.rounds),
        streaming.NAME: streaming.planned_runs(args.rounds, with_peers),
        overload.NAME: overload.planned_runs(args.rounds),
    }
    return sum(planned.get(name, 0) for name in args.scenarios)


def _estimate_s(args: argparse.Namespace, with_peers: bool) -> float:
    per_run = args.warmup + args.duration + RUN_OVERHEAD_S
    load_runs = sum(
        planned
        for name, planned in (
            (health.NAME, health.planned_runs(args.rounds, with_peers)),
            (hop.NAME, hop.planned_runs(args.rounds)),
            (telemetry.NAME, telemetry.planned_runs(args.rounds)),
            (postgres.NAME, postgres.planned_runs(args.rounds)),
            (overload.NAME, overload.planned_runs(args.rounds)),
        )
        if name in args.scenarios
    )
    footprint_s = 0.0
    if footprint.NAME in args.scenarios:
        # Start-ups take ~0.1 s each, connections ~1 ms each, plus settling.
        per_server = args.startup_repeats * 0.1 + args.connections * 0.001 + 4
        footprint_s = footprint.planned_runs(args.rounds, with_peers) * per_server
    streaming_s = 0.0
    if streaming.NAME in args.scenarios:
        # Per server, opening the streams with the pauses between steps (~1 s per 3,000) and the
        # writes (~6 s); per round the imports and bulk inserts (~3 s per 5,000 notes) and start-ups.
        servers = 6 if with_peers else 4
        per_round = servers * (args.watch_streams / 3000 + 6) + 3 * args.import_notes / 5000 + 10
        streaming_s = args.rounds * per_round
    return load_runs * per_run + footprint_s + streaming_s + 10


def _write_results(
    args: argparse.Namespace,
    out_dir: Path,
    started: datetime,
    runs: list[Run],
    errors: list[str],
    sections: dict[str, str],
    not_run: list[NotRun],
    final: bool,
) -> str:
    with_peers = args.peers is not None
    judged = budgets.evaluate(runs, with_peers, set(args.scenarios), not_run)
    header = report.Header(
        title=f"notesuite benchmark, {started.strftime('%Y-%m-%d %H:%M:%S UTC')}" + ("" if final else " (in progress)"),
        command=os.environ.get("NOTESUITE_BENCH_COMMAND") or shlex.join([sys.executable, *sys.argv]),
        machine=_machine(args),
        settings=_settings(args),
    )
    markdown = report.markdown(header, runs, judged, not_run, args.scenarios, sections)
    if errors:
        markdown += "\n## Errors\n\n" + "\n".join(f"- {error}" for error in errors) + "\n"
    (out_dir / "results.md").write_text(markdown)
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat() if final else None,
        "command": header.command,
        "machine": header.machine,
        "settings": header.settings,
        "scenarios": args.scenarios,
        "runs": [dataclasses.asdict(run) | {"valid": run.valid} for run in runs],
        "budgets": [dataclasses.asdict(budget) for budget in judged],
        "not_run": [dataclasses.asdict(item) for item in not_run],
        "sections": sections,
        "errors": errors,
    }
    (out_dir / "results.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if final:
        plots.write_all(runs, args.scenarios, out_dir)
    return markdown


def _machine(args: argparse.Namespace) -> dict[str, str]:
    binary = args.binary.resolve()
    return {
        "CPU": _lscpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "rustc": _output(["rustc", "--version"]),
        "git commit": _git_commit(),
        "notesuite binary": f"{binary} ({_output([str(binary), '--version'])}, built "
        f"{datetime.fromtimestamp(binary.stat().st_mtime, UTC).strftime('%Y-%m-%d %H:%M:%S UTC')})",
        "h2load": _output(["h2load", "--version"]).splitlines()[0],
        "python": platform.python_version(),
        "peers": str(args.peers.resolve()) if args.peers else "skipped",
    }


def _settings(args: argparse.Namespace) -> dict[str, str]:
    settings = {
        "rounds": str(args.rounds),
        "measured run": f"{args.duration:g} s, after a {args.warmup:g} s warm-up run",
        "notesuite processes": "one per service, `--runtime auto` (current_thread under `taskset -c 1`), "
        "all production layers and /metrics on, OTLP export off (except the telemetry scenario's "
        "exporting variant), `--drain-delay 0s`",
        "admission": "`NOTESUITE_CONCURRENCY_LIMIT=fixed` except in the overload scenario (which runs pool, fixed "
        "and adaptive side by side): the limit is --max-concurrent-calls, whatever the pool",
        "--max-concurrent-calls": "default (1024), not raised: health checks are exempt, the 1,000-in-flight "
        "hop runs stay under it, and a shed call (RESOURCE_EXHAUSTED) would make its run INVALID",
        "grpc-go peer": "GOMAXPROCS=1",
        "idle connections": str(args.connections),
        "start-ups timed per server and round": str(args.startup_repeats),
    }
    if hop.NAME in args.scenarios:
        settings["hop proxies"] = (
            f"{proxies.versions()}; one worker each (HAProxy `nbthread 1`, nginx `worker_processes 1` and "
            "`master_process off`, Envoy `--concurrency 1`) on core 1, forwarding h2c to the hop's notes process; "
            "configs in raw/proxies/. Every warm-up ends with a short run that completes its calls, so that "
            "connection pools are reused by the measured run"
        )
    if streaming.NAME in args.scenarios:
        settings["streaming"] = (
            f"{args.watch_streams:,} streams per server over {streaming.connections_for(args.watch_streams)} "
            f"HTTP/2 connection(s), opened in {streaming.OPEN_STEPS} steps; {streaming.WRITES} measured writes "
            "per round; "
            f"{args.import_notes:,} notes per import; notes with `--max-watches-per-user {args.watch_streams}`"
        )
    if postgres.NAME in args.scenarios or streaming.NAME in args.scenarios:
        settings["PostgreSQL"] = (
            f"{pg.redacted(args.postgres)}, shared and not pinned by the harness (its processes run on both "
            "cores); fresh databases with random names, dropped at the end"
        )
    return settings


def _lscpu_model() -> str:
    for line in _output(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _git_commit() -> str:
    commit = _output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"])
    changed = _output(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    if changed and changed != "unknown":
        return f"{commit} + uncommitted changes to {len(changed.splitlines())} tracked files"
    return commit


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
