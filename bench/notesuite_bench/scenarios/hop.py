"""The gateway hop: GetNote and CreateNote straight to notes and the same calls through the
gateway; GetNote also through real proxies in front of the same notes process (HAProxy, nginx,
Envoy: proxies.py) and through a second gateway balancing across two notes replicas. Every
process shares the server core; the series of a round run back to back, interleaved."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import proxies
from ..context import Context
from ..load import H2load, H2loadResult, Load, Target
from ..measure import NotRun, Observed, Run, RunSpec, health_probe
from ..metrics import Method
from ..services import SERVICE_NAMES, Server
from ..stubs import bearer, grpc_frame

NAME = "hop"
LOADS = (Load(clients=4, streams=10), Load(clients=50, streams=20))
METHODS = ("GetNote", "CreateNote")
DIRECT = "direct"
VIA_GATEWAY = "via gateway"
# Both methods go direct and through the gateway.
PATHS = (DIRECT, VIA_GATEWAY)
# GetNote only (a read: the replicas share one SQLite file, and the proxies are compared on the
# call the issue names).
PROXIED_METHOD = "GetNote"
VIA_REPLICAS = "via gateway, 2 notes replicas"
PROXY_PATHS = tuple(kind.path for kind in proxies.KINDS)
# The label of the process that makes each hop, whose CPU per call is `cpu_us_<label>`.
HOP_LABELS = {VIA_GATEWAY: "gateway", VIA_REPLICAS: "gateway"} | {kind.path: kind.label for kind in proxies.KINDS}
PEER_BUDGET = "gateway CPU per forwarded GetNote < nginx's and Envoy's, ≤ HAProxy's (same run)"
REPLICA_LABELS = ("notes", "notes-b")


# Calls per call in flight of the run that ends every warm-up (RefilledWarmup).
REFILL_CALLS_PER_STREAM = 3


@dataclass(frozen=True)
class RefilledWarmup:
    """h2load, with every warm-up followed by a short run that completes all its calls. The
    warm-up (`-D`) abandons the calls in flight when it ends, and nginx, which carries one call
    at a time per upstream connection, closes the connection of each: at 1,000 in flight the
    measured run would then open ~1,000 connections to notes at once, overflow its listen
    backlog (128) and have some reset (TcpExtListenOverflows, SyncookiesFailed). After this run
    the connections are idle in nginx's keepalive pool, and the measured run reuses them, the
    steady state being compared. Every path gets it, so that all are warmed up alike."""

    h2load: H2load

    def run_for(self, duration_s: float) -> H2loadResult:
        warmup = self.h2load.run_for(duration_s)
        calls = self.h2load.load.in_flight * REFILL_CALLS_PER_STREAM
        with tempfile.NamedTemporaryFile(suffix=".log") as log:
            self.h2load.run_calls(calls, duration_s, Path(log.name))
        return warmup

    def run_calls(self, calls: int, expected_s: float, log_file: Path) -> H2loadResult:
        return self.h2load.run_calls(calls, expected_s, log_file)


def paths(method: str) -> tuple[str, ...]:
    """The paths `method` is measured on, in the order a round runs them."""
    if method == PROXIED_METHOD:
        return (*PATHS, *PROXY_PATHS, VIA_REPLICAS)
    return PATHS


def planned_runs(rounds: int) -> int:
    missing = len(proxies.KINDS) - len(proxies.available())
    per_load = sum(len(paths(method)) for method in METHODS) - missing
    return rounds * len(LOADS) * per_load


def series_name(method: str, path: str) -> str:
    return f"{method} {path}"


def run(context: Context) -> list[Run]:
    runs = []
    with context.process_group() as group:
        # Both notes replicas open this file: SQLite in WAL mode, and notes serialises the
        # migrations of processes opening one file together (a lock file beside it).
        data_dir = Path(tempfile.mkdtemp(prefix="notes-data-", dir=context.work_dir))
        notes_database = f"sqlite://{data_dir / 'notes.db'}"
        users = context.notesuite.start(group, "users")
        notes = context.notesuite.start(group, "notes", database_url=notes_database)
        gateway = context.notesuite.start(group, "gateway", backends=(users, notes))
        token = context.stubs.sign_up(gateway.address)
        note_id = context.stubs.create_note(gateway.address, token, "the note every GetNote reads")
        notes_b = context.notesuite.start(group, "notes", name="notes-b", database_url=notes_database)
        balancing = context.notesuite.start(
            group, "gateway", name="gateway-2-replicas", backends=(users, notes), more_notes=(notes_b,)
        )
        hops = {VIA_GATEWAY: gateway, VIA_REPLICAS: balancing}
        for kind in proxies.KINDS:
            if kind.find() is None:
                reason = f"{kind.name} is not installed ({kind.installed_by})"
                context.not_run.append(NotRun(f"{NAME}: {series_name(PROXIED_METHOD, kind.path)}", PEER_BUDGET, reason))
                context.progress.say(f"{NAME}: {reason}: its series is not run")
                continue
            hops[kind.path] = proxies.start(group, kind, notes, context.raw_dir)
            context.progress.say(f"{NAME}: {kind.name} at {hops[kind.path].address} in front of notes")
        requests = {
            "GetNote": context.stubs.get_note_request(note_id),
            # Title only and no request_id: every call creates a new note.
            "CreateNote": context.stubs.create_note_request("bench"),
        }
        body_files = {}
        for method, request in requests.items():
            body_files[method] = context.raw_dir / f"{method}-request.bin"
            body_files[method].write_bytes(grpc_frame(request))
        for round_ in range(1, context.rounds + 1):
            for load in LOADS:
                for method in METHODS:
                    for path in paths(method):
                        if path != DIRECT and path not in hops:
                            continue
                        spec = _spec(
                            round_, load, method, path, notes, notes_b, hops.get(path), body_files[method], token
                        )
                        runs.append(context.measure(spec))
    return runs


def _spec(
    round_: int,
    load: Load,
    method_name: str,
    path: str,
    notes: Server,
    notes_b: Server,
    hop: Server | None,
    body_file: Path,
    token: str,
) -> RunSpec:
    """What each path checks: notes counts every call by gRPC status (so an error a proxy turns
    into HTTP 200 still fails the run); behind the balancing gateway, the gateway's count is
    checked against h2load's and each replica's share is recorded. Through a proxy, a health
    check through it after the run checks that trailers (grpc-status) come back."""
    method = Method(SERVICE_NAMES["notes"], method_name)
    observed = [Observed("notes", notes, method)]
    probe = None
    entry = notes
    if hop is not None:
        entry = hop
        label = HOP_LABELS[path]
        if path == VIA_REPLICAS:
            observed = [
                Observed(label, hop, method),
                *(
                    Observed(name, server, method, replica=True)
                    for name, server in zip(REPLICA_LABELS, (notes, notes_b), strict=True)
                ),
            ]
        elif hop.metrics_address is not None:
            observed.insert(0, Observed(label, hop, method))
        else:
            observed.insert(0, Observed(label, hop))
            probe = health_probe(hop.address)
    target = Target(entry.address, method.path, body_file, bearer(token))
    return RunSpec(
        scenario=NAME,
        series=series_name(method_name, path),
        round=round_,
        target=target,
        load=load,
        observed=tuple(observed),
        probe=probe,
        driver=RefilledWarmup(H2load(target, load)),
    )
