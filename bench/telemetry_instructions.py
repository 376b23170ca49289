"""Instructions per GetNote call that the RPC telemetry layers cost, counted by callgrind.

Wall-clock CPU on a shared 2-core VM drifts by tens of percent between runs; instruction counts
do not. This runs `notesuite up` under `valgrind --tool=callgrind` (pinned to one core, so
`--runtime auto` picks the same current_thread runtime as in production on one CPU) in three
variants: layers off (NOTESUITE_RPC_TELEMETRY=off), the default (no exporter), and exporting to
an OTLP endpoint where nothing listens (spans are built, queued and dropped). Each variant runs
twice, with N1 and N2 GetNote calls sent by h2load straight to notes (or through the gateway
with --via-gateway); (total(N2) - total(N1)) / (N2 - N1) is the cost of one call, start-up and
shutdown cancelled out.

    scripts/bench --smoke --binary target/release/notesuite   # once: creates .venv, h2load
    .venv/bin/python bench/telemetry_instructions.py --binary target/release/notesuite
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notesuite_bench.load import Target, run_calls
from notesuite_bench.processes import SERVER_CORE
from notesuite_bench.scenarios.telemetry import GET_NOTE, LOAD
from notesuite_bench.stubs import Stubs, bearer, grpc_frame

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "layers off": {"NOTESUITE_RPC_TELEMETRY": "off"},
    "default (no export)": {},
    "exporting (OTLP, collector down)": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
}
# Under callgrind the server runs ~50x slower than natively.
CALLS_PER_S_UNDER_VALGRIND = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/notesuite")
    parser.add_argument("--calls", type=int, nargs=2, default=(1000, 4000), metavar=("N1", "N2"))
    parser.add_argument("--via-gateway", action="store_true", help="send GetNote to the gateway")
    args = parser.parse_args()
    stubs = Stubs(ROOT / "proto")
    work = Path(tempfile.mkdtemp(prefix="notesuite-callgrind-"))
    first, second = args.calls
    results = {}
    for index, (variant, env) in enumerate(VARIANTS.items()):
        totals = [
            _instructions(args.binary, stubs, work / f"{index}-{calls}", env, calls, args.via_gateway)
            for calls in (first, second)
        ]
        results[variant] = (totals[1] - totals[0]) / (second - first)
        print(f"{variant}: {results[variant]:,.0f} instructions per call", flush=True)
    off = results["layers off"]
    for variant, value in results.items():
        if value != off:
            share = (value / off - 1) * 100
            print(f"{variant}: +{value - off:,.0f} instructions per call over layers off (+{share:.1f} %)")
    print(json.dumps(results))
    return 0


def _instructions(binary: Path, stubs: Stubs, work: Path, env: dict, calls: int, via_gateway: bool) -> int:
    """Total instructions of one `notesuite up` that served `calls` GetNote calls."""
    work.mkdir(parents=True)
    out = work / "callgrind.out"
    log = work / "stderr.log"
    command = [
        "taskset", "-c", str(SERVER_CORE), "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        str(binary), "up", "--data-dir", str(work / "data"),
        "--gateway-port", "0", "--users-port", "0", "--notes-port", "0",
        "--metrics-listen", "off", "--log-format", "json",
    ]  # fmt: skip
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **env})
    try:
        addresses = _addresses(log, process)
        token = stubs.sign_up(addresses["gateway"])
        note_id = stubs.create_note(addresses["notes"], token, "callgrind")
        body = work / "get-note.bin"
        body.write_bytes(grpc_frame(stubs.get_note_request(note_id)))
        address = addresses["gateway" if via_gateway else "notes"]
        target = Target(address, GET_NOTE.path, body, bearer(token))
        result = run_calls(target, LOAD, calls, calls / CALLS_PER_S_UNDER_VALGRIND, work / "h2load.log")
        if problems := result.problems():
            raise RuntimeError("; ".join(problems))
        # h2load sees HTTP statuses only; the layers-off variant has no status counters to read,
        # so the exact request must still succeed after the run (the token is valid for 15 min).
        if failure := stubs.get_note(address, token, note_id):
            raise RuntimeError(failure)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    totals = [int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
    return totals[-1]


def _addresses(log: Path, process: subprocess.Popen) -> dict[str, str]:
    deadline = time.monotonic() + 120
    addresses: dict[str, str] = {}
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("message") == "serving":
                    addresses[re.sub(r"^notesuite\.(\w+)\..*$", r"\1", entry["service"])] = entry["address"]
        if len(addresses) == 3:
            return addresses
        time.sleep(0.2)
    raise RuntimeError(f"notesuite up did not start:\n{log.read_text()[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())
