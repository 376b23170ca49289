"""Memory and start-up: idle RSS, the cost of an idle HTTP/2 connection, and the time from exec
to the first SERVING health check, for every notesuite service and every peer."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .. import h2probe
from ..context import Context
from ..measure import Run
from ..processes import SERVER_CORE, Process, ProcessGroup, free_port
from ..services import PEER_KINDS, STARTUP_TIMEOUT_S

NAME = "footprint"
# Lets a server finish the work a check or a burst of connections left (and the allocator
# settle) before its RSS is read.
SETTLE_S = 0.5
STEP_SETTLE_S = 0.2
CONNECTION_STEPS = 10
CHECK_TIMING_REPEATS = 10


@dataclass(frozen=True)
class Launch:
    """How to start one kind of server on a given port (and metrics port)."""

    name: str
    argv: Callable[[int, int], list[str]]
    env: Mapping[str, str] = field(default_factory=dict)


def planned_runs(rounds: int, with_peers: bool) -> int:
    return rounds * (3 + (len(PEER_KINDS) if with_peers else 0))


def run(context: Context) -> list[Run]:
    runs = []
    with context.process_group() as support:
        launches = _launches(context, support)
        for round_ in range(1, context.rounds + 1):
            for launch in launches:
                measure = functools.partial(_measure, context, launch, round_)
                runs.append(context.guarded(NAME, launch.name, round_, None, measure))
    return runs


def _launches(context: Context, support: ProcessGroup) -> list[Launch]:
    notesuite = context.notesuite
    # The gateway's own backends, started once: only the gateway's start-up is measured.
    backends = (notesuite.start(support, "users"), notesuite.start(support, "notes"))

    def service(name: str) -> Callable[[int, int], list[str]]:
        return lambda port, metrics_port: notesuite.argv(
            name,
            f"127.0.0.1:{port}",
            f"127.0.0.1:{metrics_port}",
            backends if name == "gateway" else None,
        )

    launches = [Launch(f"notesuite {name}", service(name)) for name in ("users", "notes", "gateway")]
    if context.peers is not None:
        peers = context.peers
        launches += [
            Launch(kind.name, lambda port, _metrics, kind=kind: peers.argv(kind, port), dict(kind.env))
            for kind in PEER_KINDS
        ]
    return launches


def _measure(context: Context, launch: Launch, round_: int) -> Run:
    run = Run(NAME, launch.name, round_, None, verified_by="grpc-status 0 and SERVING on every check")
    startups_ms = [_startup_ms(context, launch) for _ in range(context.startup_repeats)]
    run.values["startup_ms"] = statistics.median(startups_ms)
    run.values["startup_ms_min"] = min(startups_ms)
    run.values["startup_ms_max"] = max(startups_ms)
    with context.process_group() as group:
        port = free_port()
        process = group.spawn(launch.name, launch.argv(port, free_port()), SERVER_CORE, launch.env)
        address = f"127.0.0.1:{port}"
        h2probe.wait_until_serving(address, STARTUP_TIMEOUT_S, lambda: not process.exited())
        time.sleep(SETTLE_S)
        run.values["idle_rss_mb"] = process.rss_kb() / 1024
        run.values["check_ms"] = _check_ms(address)
        run.values["kb_per_connection"] = _kb_per_connection(run, process, address, context.connections)
        if process.exited():
            run.reject("the server exited during the measurement")
    return run


def _kb_per_connection(run: Run, process: Process, address: str, count: int) -> float:
    """RSS growth per idle connection: the median over CONNECTION_STEPS equal steps of opening
    connections. A median, because an allocator may hand memory it kept from start-up back to
    the system in the middle of a step, which makes that one step's growth negative."""
    step = max(count // CONNECTION_STEPS, 1)
    connections: list[h2probe.HealthConnection] = []
    per_step = []
    try:
        while len(connections) + step <= count:
            before_kb = process.rss_kb()
            run.reject(*_open_idle_connections(address, step, connections))
            time.sleep(STEP_SETTLE_S)
            per_step.append((process.rss_kb() - before_kb) / step)
    finally:
        for connection in connections:
            connection.close()
    if min(per_step) < 0:
        released_kb = -min(per_step) * step
        run.warnings.append(f"RSS fell by {released_kb / 1024:.1f} MB during one step of opening idle connections")
    return statistics.median(per_step)


def _startup_ms(context: Context, launch: Launch) -> float:
    """Spawns the server (no wrapper exec in between) and retries a health check on a fresh
    connection, with no pause, until it answers SERVING."""
    port = free_port()
    with context.process_group() as group:
        process, spawned_at = group.spawn_unwrapped(
            launch.name, launch.argv(port, free_port()), SERVER_CORE, launch.env
        )
        serving_at = h2probe.wait_until_serving(f"127.0.0.1:{port}", STARTUP_TIMEOUT_S, lambda: not process.exited())
        group.stop(process, kill=True)
    return (serving_at - spawned_at) * 1000


def _check_ms(address: str) -> float:
    """One health check on a fresh connection against a running server: what the start-up loop's
    last, successful attempt costs on top of the server's own start-up."""
    timings = []
    for _ in range(CHECK_TIMING_REPEATS):
        started = time.perf_counter()
        h2probe.check_once(address)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _open_idle_connections(address: str, count: int, connections: list[h2probe.HealthConnection]) -> list[str]:
    """Opens `count` more connections into `connections` (which the caller closes), each with
    one health check; returns what went wrong."""
    for _ in range(count):
        connection = h2probe.HealthConnection(address)
        connections.append(connection)
        answer = connection.check()
        if not answer.ok:
            return [f"connection {len(connections)}: health check answered {answer}"]
    return []
