"""Driving a server with h2load (pinned to the load core) and reading what it measured."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .processes import LOAD_CORE

# A run stuck on a server that stopped answering fails instead of hanging the benchmark.
H2LOAD_TIMEOUT_FACTOR = 5
H2LOAD_TIMEOUT_MARGIN_S = 60


@dataclass(frozen=True)
class Load:
    """`clients` HTTP/2 connections with `streams` calls in flight on each."""

    clients: int
    streams: int

    @property
    def in_flight(self) -> int:
        return self.clients * self.streams


@dataclass(frozen=True)
class Target:
    """One gRPC method of one server, called with a fixed request."""

    address: str
    path: str
    body_file: Path
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.path}"


@dataclass
class H2loadResult:
    requests_per_s: float
    elapsed_s: float
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    output: str
    # Values a driver measured besides the calls (none for h2load), added to the run's values.
    extra: dict[str, float] = field(default_factory=dict)

    def environmental_problems(self) -> list[str]:
        """Problems that only say the machine was busy: none that h2load itself can tell."""
        return []

    def problems(self) -> list[str]:
        found = []
        if self.succeeded == 0:
            found.append("h2load: no call succeeded")
        if self.failed or self.errored or self.timeout:
            found.append(f"h2load: {self.failed} failed, {self.errored} errored, {self.timeout} timed out")
        if self.done != self.started:
            found.append(f"h2load: {self.started - self.done} of {self.started} calls never finished")
        if self.status_2xx != self.done:
            found.append(f"h2load: {self.done - self.status_2xx} of {self.done} not HTTP 2xx")
        return found


@dataclass(frozen=True)
class H2load:
    """The default driver of a measured run: h2load sending one fixed request."""

    target: Target
    load: Load

    def run_for(self, duration_s: float) -> H2loadResult:
        return run_for(self.target, self.load, duration_s)

    def run_calls(self, calls: int, expected_s: float, log_file: Path) -> H2loadResult:
        return run_calls(self.target, self.load, calls, expected_s, log_file)


def run_for(target: Target, load: Load, duration_s: float, rps_per_client: int | None = None) -> H2loadResult:
    """Calls for `duration_s`; the calls in flight at the end are abandoned. With
    `rps_per_client`, each connection starts at most that many calls per second."""
    paced = [f"--rps={rps_per_client}"] if rps_per_client else []
    return _run(target, load, ["-D", f"{round(duration_s * 1000)}ms", *paced], duration_s)


def run_calls(target: Target, load: Load, calls: int, expected_s: float, log_file: Path) -> H2loadResult:
    """Makes exactly `calls` calls and waits for every one of them."""
    return _run(target, load, ["-n", str(calls), f"--log-file={log_file}"], expected_s)


def _run(target: Target, load: Load, mode: list[str], expected_s: float) -> H2loadResult:
    headers = [("content-type", "application/grpc"), ("te", "trailers"), *target.headers]
    argv = [
        "taskset", "-c", str(LOAD_CORE),
        "h2load", "-t1", "-c", str(load.clients), "-m", str(load.streams),
        *mode,
        "-d", str(target.body_file),
    ]  # fmt: skip
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    argv.append(target.url)
    completed = subprocess.run(
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=expected_s * H2LOAD_TIMEOUT_FACTOR + H2LOAD_TIMEOUT_MARGIN_S,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"h2load exited {completed.returncode}: {completed.stderr[-2000:]}")
    return parse_h2load_output(completed.stdout)


def parse_h2load_output(output: str) -> H2loadResult:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"h2load output has no match for {pattern!r}:\n{output[-2000:]}")
        return float(match.group(1))

    return H2loadResult(
        requests_per_s=number(r"finished in [\d.]+m?s, ([\d.]+) req/s"),
        elapsed_s=_seconds(re.search(r"finished in ([\d.]+m?s),", output)),
        started=int(number(r"(\d+) started")),
        done=int(number(r"(\d+) done")),
        succeeded=int(number(r"(\d+) succeeded")),
        failed=int(number(r"(\d+) failed")),
        errored=int(number(r"(\d+) errored")),
        timeout=int(number(r"(\d+) timeout")),
        status_2xx=int(number(r"status codes: (\d+) 2xx")),
        output=output,
    )


def _seconds(match: re.Match | None) -> float:
    if match is None:
        return float("nan")
    text = match.group(1)
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text[:-1])


@dataclass(frozen=True)
class Latencies:
    p50_ms: float
    p99_ms: float
    p999_ms: float


def latencies_from_log(log_file: Path) -> Latencies:
    """Percentiles of column 3 (µs) of an h2load --log-file."""
    durations_us = np.sort(np.loadtxt(log_file, dtype=np.int64, usecols=2, ndmin=1))
    if durations_us.size == 0:
        raise RuntimeError(f"{log_file} is empty")
    p50, p99, p999 = (nearest_rank(durations_us, permille) / 1000.0 for permille in (500, 990, 999))
    return Latencies(p50, p99, p999)


def nearest_rank(ordered: np.ndarray, permille: int) -> float:
    """The smallest value that at least permille/1000 of the (sorted) values are at or below: a
    measured call, never an interpolation. Ranked in integers: np.percentile's float q puts
    0.999 × 1000 at 999.0000000000001, one call too high."""
    rank = -(-ordered.size * permille // 1000)  # ceil
    return float(ordered[max(rank, 1) - 1])


def compress(log_file: Path) -> Path:
    """Gzips a log in place: a 10 s run at 100k req/s writes ~25 MB."""
    compressed = log_file.with_suffix(log_file.suffix + ".gz")
    with log_file.open("rb") as source, gzip.open(compressed, "wb", compresslevel=1) as sink:
        shutil.copyfileobj(source, sink)
    log_file.unlink()
    return compressed
