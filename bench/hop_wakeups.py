"""Why the gateway's hop costs what it costs on one shared core: wake-ups and syscalls per call.

GetNote through a gateway in front of one notes process, through a gateway balancing two notes
processes (one SQLite file), and through nginx in front of the first notes (when installed),
every server on the server core as in `scripts/bench --only hop`. For each front it prints CPU
µs per call (user and system), context switches per call of the front and of notes (voluntary:
it waited for work; involuntary: it was preempted), and, when `perf` can read the syscall
tracepoints, the front's syscalls per call. Counts come from /proc/<pid>/{stat,status} (the
main thread: the one that runs the current_thread runtime) over each measured run.

    scripts/bench --smoke --binary target/release/notesuite   # once: creates .venv, h2load
    .venv/bin/python bench/hop_wakeups.py
    .venv/bin/python bench/hop_wakeups.py --binary target/release/notesuite --load 50,20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notesuite_bench import proxies
from notesuite_bench.load import Load, Target, run_for
from notesuite_bench.processes import ProcessGroup
from notesuite_bench.services import Notesuite, Server
from notesuite_bench.stubs import Stubs, bearer, grpc_frame

ROOT = Path(__file__).resolve().parent.parent
GET_NOTE = "/notesuite.notes.v1.NotesService/GetNote"
SYSCALLS = ("epoll_wait", "recvfrom", "writev", "sched_yield")


@dataclass(frozen=True)
class Counters:
    user_s: float
    system_s: float
    voluntary: int
    involuntary: int

    @staticmethod
    def of(pid: int) -> Counters:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = dict(
            line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
        )
        tick = os.sysconf("SC_CLK_TCK")
        return Counters(
            int(fields[11]) / tick,
            int(fields[12]) / tick,
            int(status["voluntary_ctxt_switches"]),
            int(status["nonvoluntary_ctxt_switches"]),
        )

    def per_call(self, before: Counters, calls: int) -> PerCall:
        return PerCall(
            (self.user_s - before.user_s) / calls * 1e6,
            (self.system_s - before.system_s) / calls * 1e6,
            (self.voluntary - before.voluntary) / calls,
            (self.involuntary - before.involuntary) / calls,
        )


@dataclass(frozen=True)
class PerCall:
    """A process's share of one call: CPU µs, and context switches."""

    user_us: float
    system_us: float
    voluntary: float
    involuntary: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/notesuite")
    parser.add_argument("--load", default="4,10", help="h2load connections,streams (default 4,10: 40 in flight)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured run")
    args = parser.parse_args()
    clients, streams = (int(part) for part in args.load.split(","))
    load = Load(clients, streams)
    stubs = Stubs(ROOT / "proto")
    work = Path(tempfile.mkdtemp(prefix="notesuite-hop-wakeups-"))
    perf = shutil.which("perf")
    with ProcessGroup(work / "logs") as group:
        suite = Notesuite(args.binary, work)
        database = f"sqlite://{Path(tempfile.mkdtemp(prefix='notes-data-', dir=work)) / 'notes.db'}"
        users = suite.start(group, "users")
        notes = suite.start(group, "notes", database_url=database)
        one = suite.start(group, "gateway", name="gateway", backends=(users, notes))
        token = stubs.sign_up(one.address)
        note_id = stubs.create_note(one.address, token, "hop wake-ups")
        notes_b = suite.start(group, "notes", name="notes-b", database_url=database)
        two = suite.start(group, "gateway", name="gateway-2", backends=(users, notes), more_notes=(notes_b,))
        fronts: list[tuple[str, Server]] = [("gateway, 1 notes", one), ("gateway, 2 notes", two)]
        nginx = next(kind for kind in proxies.KINDS if kind.name == "nginx")
        if nginx.find() is not None:
            fronts.append(("nginx, 1 notes", proxies.start(group, nginx, notes, work)))
        body = work / "get-note.bin"
        body.write_bytes(grpc_frame(stubs.get_note_request(note_id)))
        print(f"GetNote, {load.in_flight} in flight, {args.rounds} rounds of {args.duration:g} s")
        print(
            "front               | req/s | CPU µs/call user+sys | switches/call vol/invol "
            "| notes switches/call | syscalls/call"
        )
        for round_ in range(args.rounds):
            for name, front in fronts:
                target = Target(front.address, GET_NOTE, body, bearer(token))
                run_for(target, load, 1.0)
                backends = [notes, notes_b] if front is two else [notes]
                tracing = _trace_syscalls(perf, front.process.pid, args.duration * 0.9)
                before = [Counters.of(server.process.pid) for server in (front, *backends)]
                result = run_for(target, load, args.duration)
                after = [Counters.of(server.process.pid) for server in (front, *backends)]
                # A timed run abandons the calls in flight at its end; any other problem counts.
                if result.failed or result.errored or result.status_2xx != result.done:
                    raise RuntimeError(f"{name}: {'; '.join(result.problems())}")
                calls = result.succeeded
                hop, *behind = (a.per_call(b, calls) for a, b in zip(after, before, strict=True))
                # perf counts for 90 % of the run: the calls in that window, at the run's rate.
                syscalls = _syscalls_per_call(tracing, result.requests_per_s * args.duration * 0.9)
                notes_switches = " + ".join(f"{n.voluntary:.2f}/{n.involuntary:.2f}" for n in behind)
                print(
                    f"r{round_ + 1} {name:<17}| {result.requests_per_s:5.0f} | "
                    f"{hop.user_us:5.1f} + {hop.system_us:4.1f} = {hop.user_us + hop.system_us:5.1f} | "
                    f"{hop.voluntary:.2f} / {hop.involuntary:.2f} | {notes_switches} | {syscalls}",
                    flush=True,
                )
    return 0


def _trace_syscalls(perf: str | None, pid: int, seconds: float) -> subprocess.Popen | None:
    """perf counting the syscall tracepoints of `pid` for `seconds`, or None without perf."""
    if perf is None:
        return None
    events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS) + ",raw_syscalls:sys_enter"
    argv = [perf, "stat", "-x,", "-e", events, "-p", str(pid), "--", "sleep", f"{seconds:.2f}"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _syscalls_per_call(tracing: subprocess.Popen | None, calls: float) -> str:
    if tracing is None:
        return "(no perf)"
    _, output = tracing.communicate()
    counts = {}
    for line in output.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].isdigit():
            event = fields[2]
            name = "all" if event == "raw_syscalls:sys_enter" else event.removeprefix("syscalls:sys_enter_")
            counts[name] = int(fields[0]) / calls
    if not counts:
        return "(perf cannot read the syscall tracepoints)"
    return " ".join(f"{name} {count:.2f}" for name, count in counts.items())


if __name__ == "__main__":
    sys.exit(main())
