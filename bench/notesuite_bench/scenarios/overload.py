"""Overload: ListNotes and CreateNote straight to one notes process (SQLite) with 1,024, 3,072 and
10,240 calls in flight (1x, 3x and 10x the old fixed admission limit, `--max-concurrent-calls`),
and what is left of its goodput: OK answers per second, the p99 latency of those OK calls, and
the calls shed (RESOURCE_EXHAUSTED). Each of the three ways of setting the limit
(`--concurrency-limit`: fixed at 1,024, sized from the pool — 8 connections x 8 = 64 —, and
adaptive) is measured in the same run, one notes process each, so that they compare side by side.

Two kinds of crowd. "at once": h2load keeps its calls in flight whatever they answer, so a shed
call is retried at once, with no regard for the answer's retry delay: the worst a crowd can do,
and on one core every shed answer takes CPU from the calls admitted. "paced": each connection
starts at most PACED_RPS calls per second (clients that space their retries), so 1x, 3x and 10x
the connections offer 1x, 3x and 10x about what the process serves (~3,000 calls/s). Every gRPC answer is
an HTTP 200 to h2load, so the counts by status and the latency of the OK calls come from the
server's own metrics (`rpc_server_call_duration_seconds` by status code, read before and after
the run): the p99 is interpolated within its histogram bucket, as Prometheus'
histogram_quantile does. Shed calls are expected, so a run is valid whatever its calls answered,
as long as some of them were OK.
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from .. import load as h2load
from ..context import Context
from ..load import Load, Target
from ..measure import Run
from ..metrics import Method, wait_until_quiet
from ..services import CONCURRENCY_LIMIT_ENV, SERVICE_NAMES, Server
from ..stubs import bearer, grpc_frame
from ..tokens import user_token

NAME = "overload"
# The default admission limit: what the server claims to serve at once.
ADMITTED = 1024
# Connections x calls in flight on each: 1x, 3x and 10x the default limit.
LOADS = (Load(clients=8, streams=128), Load(clients=24, streams=128), Load(clients=80, streams=128))
METHODS = ("ListNotes", "CreateNote")
AT_ONCE = "at once"
PACED = "paced"
CROWDS = (AT_ONCE, PACED)
# Each way of setting the limit, side by side, as the notes process's environment; the binary's
# default first. "pool, no wait" is the default limit with `--admission-wait 0`: every call over
# the limit shed at once, as before the admission wait.
ADMISSION_WAIT_ENV = "NOTESUITE_ADMISSION_WAIT"
LIMITS = {
    "pool": {CONCURRENCY_LIMIT_ENV: "pool"},
    "pool, no wait": {CONCURRENCY_LIMIT_ENV: "pool", ADMISSION_WAIT_ENV: "0ms"},
    "fixed": {CONCURRENCY_LIMIT_ENV: "fixed"},
    "adaptive": {CONCURRENCY_LIMIT_ENV: "adaptive"},
}
# Per connection: 8 connections offer about what one notes process serves on one core.
PACED_RPS = 375
SEEDED_NOTES = 20
PAGE_SIZE = 10
OK = 0
RESOURCE_EXHAUSTED = 8
QUIET_TIMEOUT_S = 30

BUCKET = re.compile(r"^rpc_server_call_duration_seconds_bucket\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def planned_runs(rounds: int) -> int:
    return rounds * len(LOADS) * len(METHODS) * len(CROWDS) * len(LIMITS)


def series_name(method: str, crowd: str, limit: str) -> str:
    return f"{method} {crowd}, {limit} limit"


def multiple(load: Load) -> str:
    return f"{load.in_flight / ADMITTED:g}x"


@dataclass
class Histogram:
    """Cumulative counts by upper bound (seconds), for one method and status code."""

    buckets: Counter = field(default_factory=Counter)

    def minus(self, before: Histogram) -> Histogram:
        earlier = before.buckets
        return Histogram(Counter({bound: count - earlier.get(bound, 0) for bound, count in self.buckets.items()}))

    def quantile(self, q: float) -> float:
        """Seconds, interpolated linearly within the bucket that holds rank q (histogram_quantile)."""
        bounds = sorted(self.buckets)
        total = self.buckets[math.inf]
        if total <= 0:
            return math.nan
        rank = q * total
        lower_bound, lower_count = 0.0, 0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if bound == math.inf:
                    return lower_bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1)
            lower_bound, lower_count = bound, count
        return math.nan


def histograms(metrics_address: str, method: Method) -> dict[int, Histogram]:
    """The call-duration histogram of `method`, by status code."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    by_code: dict[int, Histogram] = {}
    for sample in BUCKET.finditer(text):
        labels = dict(LABEL.findall(sample["labels"]))
        if (labels.get("rpc_service"), labels.get("rpc_method")) != (method.service, method.name):
            continue
        code = int(labels["rpc_grpc_status_code"])
        bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        by_code.setdefault(code, Histogram()).buckets[bound] += int(float(sample["value"]))
    return by_code


def run(context: Context) -> list[Run]:
    runs = []
    for limit in LIMITS:
        runs += _run_limit(context, limit)
    return runs


def _run_limit(context: Context, limit: str) -> list[Run]:
    runs = []
    with context.process_group() as group:
        notes = context.notesuite.start(
            group, "notes", name=f"notes-{limit.replace(', ', '-').replace(' ', '-')}", env=LIMITS[limit], adaptive=True
        )
        token = user_token(context.notesuite.keys_dir / "jwt-private.pem")
        context.stubs.create_notes(
            notes.address, token, [context.stubs.create_note_request(f"note {i}") for i in range(SEEDED_NOTES)]
        )
        requests = {
            "ListNotes": context.stubs.list_notes_request(PAGE_SIZE),
            # No request_id: every call creates a new note.
            "CreateNote": context.stubs.create_note_request("overload"),
        }
        targets = {}
        for method, request in requests.items():
            body_file = context.raw_dir / f"overload-{method}-request.bin"
            body_file.write_bytes(grpc_frame(request))
            path = Method(SERVICE_NAMES["notes"], method).path
            targets[method] = Target(notes.address, path, body_file, bearer(token))
        for round_ in range(1, context.rounds + 1):
            for crowd in CROWDS:
                for load in LOADS:
                    for method in METHODS:

                        def measure(method: str = method, load: Load = load, crowd: str = crowd, round_: int = round_):
                            return _measure(context, notes, targets[method], method, crowd, limit, load, round_)

                        series = series_name(method, crowd, limit)
                        runs.append(context.guarded(NAME, series, round_, load.in_flight, measure))
    return runs


def _measure(
    context: Context,
    notes: Server,
    target: Target,
    method_name: str,
    crowd: str,
    limit: str,
    load: Load,
    round_: int,
) -> Run:
    method = Method(SERVICE_NAMES["notes"], method_name)
    run = Run(NAME, series_name(method_name, crowd, limit), round_, load.in_flight)
    rps = PACED_RPS if crowd == PACED else None
    # The warm-up lets an adaptive limit settle; its calls are not counted.
    h2load.run_for(target, load, context.runner.warmup_s, rps)
    wait_until_quiet(notes.metrics_address, method, QUIET_TIMEOUT_S)
    before = histograms(notes.metrics_address, method)
    result = h2load.run_for(target, load, context.runner.duration_s, rps)
    wait_until_quiet(notes.metrics_address, method, QUIET_TIMEOUT_S)
    time.sleep(0.1)
    after = histograms(notes.metrics_address, method)
    by_code = {code: histogram.minus(before.get(code, Histogram())) for code, histogram in after.items()}
    counts = {code: histogram.buckets[math.inf] for code, histogram in by_code.items()}
    ok = counts.get(OK, 0)
    shed = counts.get(RESOURCE_EXHAUSTED, 0)
    other = sum(count for code, count in counts.items() if count and code not in (OK, RESOURCE_EXHAUSTED))
    elapsed = result.elapsed_s
    run.values = {
        "goodput": ok / elapsed,
        "ok_p50_ms": by_code[OK].quantile(0.5) * 1000 if ok else math.nan,
        "ok_p99_ms": by_code[OK].quantile(0.99) * 1000 if ok else math.nan,
        "shed_per_s": shed / elapsed,
        "shed_share": shed / max(ok + shed + other, 1),
        "other": float(other),
        "seconds": elapsed,
    }
    if ok == 0:
        run.reject("no call ended OK")
    if notes.process.exited():
        run.reject("notes exited during the run")
    neither = sorted((code, count) for code, count in counts.items() if count and code not in (OK, RESOURCE_EXHAUSTED))
    if neither:
        described = ", ".join(f"{count} with status {code}" for code, count in neither)
        run.warnings.append(f"calls neither OK nor shed: {described} (the run's end abandons the calls in flight)")
    return run
