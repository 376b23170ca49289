"""User-space instructions the gateway spends per forwarded GetNote, counted by callgrind.

Only the gateway runs under `valgrind --tool=callgrind` (pinned to the server core, so
`--runtime auto` picks the current_thread runtime it runs with in production on one CPU); users
and notes run natively in front of it. After a warm-up, the counters are zeroed
(`callgrind_control -z`), the measured calls are made, and the counters are dumped
(`callgrind_control -d`): the dump holds those calls and nothing else, start-up and shutdown
left out. The dump stays in the work directory for `callgrind_annotate`.

    scripts/bench --smoke --binary target/release/notesuite   # once: creates .venv, h2load
    .venv/bin/python bench/hop_instructions.py --binary target/release/notesuite
    NOTESUITE_RPC_TELEMETRY=off .venv/bin/python bench/hop_instructions.py   # without the layers
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notesuite_bench import h2probe
from notesuite_bench.load import Load, Target, run_calls
from notesuite_bench.processes import SERVER_CORE, ProcessGroup, free_port
from notesuite_bench.services import CONCURRENCY_LIMIT_ENV, GATEWAY_BENCH_LIMITS, Notesuite, _bound_addresses
from notesuite_bench.stubs import Stubs, bearer, grpc_frame

ROOT = Path(__file__).resolve().parent.parent
GET_NOTE = "/notesuite.notes.v1.NotesService/GetNote"
WARMUP_CALLS = 400
# Under callgrind the gateway runs ~50x slower than natively.
CALLS_PER_S_UNDER_VALGRIND = 100
# The gateway's variables, passed on to it (users and notes run with their defaults).
PASSED_ON = ("NOTESUITE_RPC_TELEMETRY", "NOTESUITE_COALESCE_WRITES", "OTEL_EXPORTER_OTLP_ENDPOINT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/notesuite")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4, help="h2load connections")
    parser.add_argument("--streams", type=int, default=10, help="calls in flight per connection")
    args = parser.parse_args()
    stubs = Stubs(ROOT / "proto")
    work = Path(tempfile.mkdtemp(prefix="notesuite-hop-callgrind-"))
    out = work / "callgrind.out"
    with ProcessGroup(work / "logs") as group:
        suite = Notesuite(args.binary, work)
        users = suite.start(group, "users")
        notes = suite.start(group, "notes")
        metrics_listen = f"127.0.0.1:{free_port()}"
        argv = suite.argv("gateway", metrics_listen=metrics_listen, backends=(users, notes))
        env = {**GATEWAY_BENCH_LIMITS, CONCURRENCY_LIMIT_ENV: "fixed"}
        env |= {name: os.environ[name] for name in PASSED_ON if name in os.environ}
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        gateway = group.spawn("gateway", [*valgrind, *argv], SERVER_CORE, env)
        address, _ = _bound_addresses(gateway, metrics_listen)
        h2probe.wait_until_serving(address, 120, lambda: not gateway.exited())
        token = stubs.sign_up(address)
        note_id = stubs.create_note(address, token, "callgrind")
        body = work / "get-note.bin"
        body.write_bytes(grpc_frame(stubs.get_note_request(note_id)))
        target = Target(address, GET_NOTE, body, bearer(token))
        load = Load(args.clients, args.streams)
        expected_s = args.calls / CALLS_PER_S_UNDER_VALGRIND
        run_calls(target, load, WARMUP_CALLS, expected_s, work / "warmup.log")
        _control("-z", gateway.pid)
        result = run_calls(target, load, args.calls, expected_s, work / "measured.log")
        _control("-d", gateway.pid)
        if problems := result.problems():
            raise RuntimeError("; ".join(problems))
        # h2load counts HTTP statuses only: the exact call must still succeed through the gateway.
        if failure := stubs.get_note(address, token, note_id):
            raise RuntimeError(failure)
        os.kill(gateway.pid, signal.SIGTERM)
        gateway.popen.wait(timeout=300)
    dumps = sorted(work.glob("callgrind.out.*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump in {work}")
    totals = [int(line.split()[1]) for line in dumps[0].read_text().splitlines() if line.startswith("totals:")]
    print(f"{totals[-1] / args.calls:,.0f} instructions per forwarded GetNote ({args.calls} calls)")
    print(f"dump: {dumps[0]}")
    return 0


def _control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
