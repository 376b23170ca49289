"""A load generator for calls whose request must change from call to call, which h2load (one
fixed body for every call) cannot make: CreateNote with a fresh `request_id` per call, each
call in flight for an owner of its own.

`GrpcLoad` is the harness's side (a measure.Driver); it runs this module as a separate process
pinned to the load core (`python -m notesuite_bench.grpc_load SPEC.json`), a grpc.aio client
sending pre-serialised requests: `workers` coroutines, each always one call in flight with
its own token, spread over `clients` HTTP/2 connections. Each call's request is a template
with its placeholder request id replaced by a fresh UUID (same length: no re-encoding). The
process prints one JSON line with the counts, the window it measured and what the machine's
CPUs did in it; with a log file it writes one line per call as h2load's --log-file does
(start µs, status, duration µs).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .processes import LOAD_CORE, clean_environment, machine_busy_now

PLACEHOLDER_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
CALL_TIMEOUT_S = 30
TIMEOUT_FACTOR = 5
TIMEOUT_MARGIN_S = 60
# The driver's own core busier than this over a run: the rate may be the driver's, not the
# server's.
SATURATED_LOAD_CORE = 0.9


@dataclass
class GrpcLoadResult:
    requests_per_s: float
    elapsed_s: float
    started: int
    succeeded: int
    failed: dict[str, int]
    # CPU time of the driver process, and of the whole machine (all cores, all processes),
    # within the measured window.
    load_cpu_s: float
    machine_busy_s: float
    cores: int
    extra: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.succeeded == 0:
            found.append("driver: no call succeeded")
        if self.failed:
            described = ", ".join(f"{count} {code}" for code, count in sorted(self.failed.items()))
            found.append(f"driver: calls failed: {described}")
        if self.succeeded + sum(self.failed.values()) != self.started:
            found.append(f"driver: {self.started} calls started, {self.succeeded + sum(self.failed.values())} ended")
        return found

    def environmental_problems(self) -> list[str]:
        busy = self.load_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0
        if busy >= SATURATED_LOAD_CORE:
            return [f"the load generator kept its core {busy:.0%} busy: the rate may be its own limit"]
        return []


@dataclass(frozen=True)
class GrpcLoad:
    """Drives one unary method at `address` with `workers` calls in flight, worker i sending
    `template` (a serialised request holding PLACEHOLDER_REQUEST_ID once) with
    tokens[i % len(tokens)]."""

    address: str
    path: str
    template: bytes
    tokens: tuple[str, ...]
    workers: int
    clients: int
    work_dir: Path

    def __post_init__(self) -> None:
        if self.template.count(PLACEHOLDER_REQUEST_ID.encode()) != 1:
            raise ValueError("the request template must hold the placeholder request id exactly once")

    def run_for(self, duration_s: float) -> GrpcLoadResult:
        return self._run({"duration_s": duration_s}, duration_s)

    def run_calls(self, calls: int, expected_s: float, log_file: Path) -> GrpcLoadResult:
        return self._run({"calls": calls, "log_file": str(log_file)}, expected_s)

    def _run(self, mode: dict, expected_s: float) -> GrpcLoadResult:
        spec = {
            "address": self.address,
            "path": self.path,
            "template": base64.b64encode(self.template).decode(),
            "tokens": list(self.tokens),
            "workers": self.workers,
            "clients": self.clients,
            **mode,
        }
        spec_file = self.work_dir / f"grpc-load-{os.getpid()}-{time.monotonic_ns()}.json"
        spec_file.write_text(json.dumps(spec))
        argv = ["taskset", "-c", str(LOAD_CORE), sys.executable, "-m", "notesuite_bench.grpc_load", str(spec_file)]
        try:
            completed = subprocess.run(
                argv,
                check=False,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
                env=clean_environment(),
                timeout=expected_s * TIMEOUT_FACTOR + TIMEOUT_MARGIN_S,
            )
        finally:
            spec_file.unlink(missing_ok=True)
        if completed.returncode != 0:
            raise RuntimeError(f"the gRPC load generator exited {completed.returncode}: {completed.stderr[-2000:]}")
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        calls = max(report["succeeded"], 1)
        window_s = report["cores"] * report["elapsed_s"]
        extra = {
            "cpu_us_load": report["load_cpu_s"] * 1e6 / calls,
            "cpu_us_machine": report["machine_busy_s"] * 1e6 / calls,
            "machine_busy_pct": report["machine_busy_s"] / window_s * 100 if window_s > 0 else 0.0,
        }
        return GrpcLoadResult(
            requests_per_s=report["succeeded"] / report["elapsed_s"] if report["elapsed_s"] > 0 else 0.0,
            elapsed_s=report["elapsed_s"],
            started=report["started"],
            succeeded=report["succeeded"],
            failed=report["failed"],
            load_cpu_s=report["load_cpu_s"],
            machine_busy_s=report["machine_busy_s"],
            cores=report["cores"],
            extra=extra,
        )


def with_request_id(template: bytes, request_id: str) -> bytes:
    """The template with its placeholder request id replaced (both 36 ASCII bytes)."""
    if len(request_id) != len(PLACEHOLDER_REQUEST_ID):
        raise ValueError(f"a request id of {len(request_id)} characters would change the encoding")
    return template.replace(PLACEHOLDER_REQUEST_ID.encode(), request_id.encode(), 1)


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def _drive(spec: dict) -> dict:
    import grpc  # here: the harness process itself needs no grpc.aio

    template = base64.b64decode(spec["template"])
    workers = spec["workers"]
    total_calls = spec.get("calls")
    deadline_s = spec.get("duration_s")
    # A channel of its own per client: without a local subchannel pool, channels to one
    # address would share one connection.
    channels = [
        grpc.aio.insecure_channel(spec["address"], options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(spec["clients"])
    ]
    calls = [channel.unary_unary(spec["path"]) for channel in channels]
    metadata = [(("authorization", f"Bearer {token}"),) for token in spec["tokens"]]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)

    started = 0
    succeeded = 0
    failed: Counter = Counter()
    log: list[tuple[int, int, int]] = []

    async def worker(index: int, stop_at: float) -> None:
        nonlocal started, succeeded
        call = calls[index % len(calls)]
        credentials = metadata[index % len(metadata)]
        while True:
            if total_calls is not None:
                if started >= total_calls:
                    return
            elif time.perf_counter() >= stop_at:
                return
            started += 1
            request = with_request_id(template, str(uuid.uuid4()))
            begun_ns = time.time_ns()
            begun = time.perf_counter_ns()
            status = 200
            try:
                await call(request, metadata=credentials, timeout=CALL_TIMEOUT_S)
                succeeded += 1
            except grpc.aio.AioRpcError as error:
                failed[error.code().name] += 1
                status = 500
            log.append((begun_ns // 1000, status, (time.perf_counter_ns() - begun) // 1000))

    busy_before, cpu_before, began = machine_busy_now(), _own_cpu_s(), time.perf_counter()
    stop_at = began + (deadline_s or 0.0)
    await asyncio.gather(*(worker(index, stop_at) for index in range(workers)))
    elapsed = time.perf_counter() - began
    busy_after, cpu_after = machine_busy_now(), _own_cpu_s()
    for channel in channels:
        await channel.close()
    if spec.get("log_file"):
        # Every call has ended: nothing waits on the loop while the log is written.
        Path(spec["log_file"]).write_text(
            "".join(f"{start}\t{status}\t{duration}\n" for start, status, duration in log)
        )
    return {
        "started": started,
        "succeeded": succeeded,
        "failed": dict(failed),
        "elapsed_s": elapsed,
        "load_cpu_s": cpu_after - cpu_before,
        "machine_busy_s": busy_after - busy_before,
        "cores": os.cpu_count(),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    print(json.dumps(asyncio.run(_drive(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
