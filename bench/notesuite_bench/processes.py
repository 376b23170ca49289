"""Starting, pinning, measuring and stopping the processes of a benchmark.

Core LOAD_CORE runs the load generator (and this harness); core SERVER_CORE runs whatever is
measured. Every process started here is stopped by ProcessGroup.close(), also on failure or
Ctrl-C, and dies with the harness if the harness is killed outright (setpriv --pdeathsig).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

LOAD_CORE = 0
SERVER_CORE = 1
STOP_TIMEOUT_S = 10
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Numbers the log files of every process the harness starts, across all groups.
_process_serial = itertools.count(1)


def pin_this_thread(core: int) -> None:
    os.sched_setaffinity(0, {core})


@contextlib.contextmanager
def pinned_to(core: int) -> Iterator[None]:
    """Runs the block with this thread on `core`: a child forked inside inherits it, without a
    `taskset` exec in front of it (which would count in a start-up time)."""
    previous = os.sched_getaffinity(0)
    pin_this_thread(core)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def free_port() -> int:
    """A port nothing listens on right now (for servers that cannot bind port 0 and say which)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: fields are counted after its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_S


def machine_busy_s(stat_text: str) -> float:
    """Seconds all CPUs together spent not idle, from /proc/stat's first line (user, nice,
    system, idle, iowait, irq, softirq, steal, ...): everything but idle and iowait."""
    fields = stat_text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError(f"not /proc/stat: {fields[:3]}")
    ticks = [int(value) for value in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_S


def machine_busy_now() -> float:
    return machine_busy_s(Path("/proc/stat").read_text())


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without settings that would change what a server does
    (a stray OTEL endpoint or RUST_LOG=debug in the caller's shell), plus `extra`."""
    scrubbed_prefixes = ("OTEL_", "NOTESUITE_", "RUST_LOG", "GOMAXPROCS", "GOGC")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(scrubbed_prefixes)}
    environment.update(extra or {})
    return environment


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def log_size(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.stderr_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """Every process a scenario started; close() stops them all."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: list[str],
        core: int = SERVER_CORE,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        """Starts `argv` pinned to `core`, its stdout and stderr in log_dir/<name>.log."""
        stderr_path = self._log_path(name)
        wrapper = ["taskset", "-c", str(core)]
        if shutil.which("setpriv"):
            wrapper = ["setpriv", "--pdeathsig", "KILL", "--", *wrapper]
        with stderr_path.open("wb") as log:
            popen = subprocess.Popen(
                [*wrapper, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environment(env),
                cwd=cwd,
                # Ctrl-C reaches the harness only: it stops its processes itself, in order.
                start_new_session=True,
            )
        process = Process(name, popen, stderr_path)
        self.processes.append(process)
        return process

    def spawn_unwrapped(
        self, name: str, argv: list[str], core: int, env: Mapping[str, str] | None = None
    ) -> tuple[Process, float]:
        """Starts `argv` itself (no wrapper exec) pinned to `core`; returns it and the
        perf_counter() taken just before the fork."""
        stderr_path = self._log_path(name)
        environment = clean_environment(env)
        with stderr_path.open("wb") as log, pinned_to(core):
            started = time.perf_counter()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        process = Process(name, popen, stderr_path)
        self.processes.append(process)
        return process, started

    def _log_path(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
        return self.log_dir / f"{next(_process_serial):04d}-{slug}.log"

    def stop(self, process: Process, kill: bool = False) -> None:
        if not process.exited():
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        if process in self.processes:
            self.processes.remove(process)

    def close(self) -> None:
        # Newest first: a gateway goes before the backends it calls.
        for process in reversed(list(self.processes)):
            self.stop(process)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
