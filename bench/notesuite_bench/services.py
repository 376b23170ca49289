"""Launching the servers under test: notesuite's three services and the reference peers."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import h2probe
from .processes import SERVER_CORE, Process, ProcessGroup, free_port

STARTUP_TIMEOUT_S = 30
# The scenarios measure latency at a given number of calls in flight, so their servers admit
# up to --max-concurrent-calls instead of adapting the limit to latency (which would shed
# what they measure); the overload scenario measures the adaptive limit itself. An environment
# variable rather than a flag, so that a binary from before the setting still starts.
CONCURRENCY_LIMIT_ENV = "NOTESUITE_CONCURRENCY_LIMIT"
SERVICE_NAMES = {
    "users": "notesuite.users.v1.UsersService",
    "notes": "notesuite.notes.v1.NotesService",
    "gateway": "notesuite.gateway.v1.GatewayService",
}


@dataclass
class Server:
    """A started server: its process, gRPC address and (notesuite only) metrics address."""

    name: str
    process: Process
    address: str
    metrics_address: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"


class Notesuite:
    """Starts notesuite services as separate processes; users and notes each get a fresh data
    directory."""

    def __init__(self, binary: Path, work_dir: Path):
        self.binary = binary
        self.work_dir = work_dir
        self.keys_dir = work_dir / "keys"
        subprocess.run(
            [str(binary), "keygen", "--out-dir", str(self.keys_dir)],
            check=True,
            capture_output=True,
        )

    def argv(
        self,
        service: str,
        listen: str = "127.0.0.1:0",
        metrics_listen: str = "127.0.0.1:0",
        backends: tuple[Server, Server] | None = None,
        database_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        more_notes: tuple[Server, ...] = (),
    ) -> list[str]:
        """The command line of `service`; the gateway needs its (users, notes) backends, and
        balances across notes and `more_notes` (`--notes-url A,B`). users and notes get a fresh
        SQLite file unless `database_url` names another database."""
        common = [
            str(self.binary), service,
            "--listen", listen,
            "--metrics-listen", metrics_listen,
            "--drain-delay", "0s",
            "--log-format", "json",
        ]  # fmt: skip
        if service == "gateway":
            if backends is None:
                raise ValueError("the gateway needs its users and notes backends")
            users, notes = backends
            return [
                *common,
                "--users-url", users.url,
                "--notes-url", ",".join(server.url for server in (notes, *more_notes)),
                "--jwt-private-key", str(self.keys_dir / "jwt-private.pem"),
                # Tokens from one sign-up must outlive the longest scenario.
                "--access-token-ttl", "24h",
                *extra_args,
            ]  # fmt: skip
        if database_url is None:
            data_dir = Path(tempfile.mkdtemp(prefix=f"{service}-data-", dir=self.work_dir))
            database_url = f"sqlite://{data_dir / f'{service}.db'}"
        return [
            *common,
            "--database-url", database_url,
            "--jwt-public-key", str(self.keys_dir / "jwt-public.pem"),
            *extra_args,
        ]  # fmt: skip

    def start(
        self,
        group: ProcessGroup,
        service: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        backends: tuple[Server, Server] | None = None,
        database_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        adaptive: bool = False,
        more_notes: tuple[Server, ...] = (),
    ) -> Server:
        """Starts `service` on free ports and returns once it answers SERVING; its limit on
        calls at once is fixed unless `adaptive`."""
        name = name or service
        env = dict(env or {})
        if not adaptive:
            env.setdefault(CONCURRENCY_LIMIT_ENV, "fixed")
        # A port of our own rather than :0, so that the metrics address is known even when the
        # log line saying it is missing (notes on PostgreSQL at the default log level does not
        # print "serving metrics at /metrics").
        metrics_listen = f"127.0.0.1:{free_port()}"
        argv = self.argv(
            service,
            metrics_listen=metrics_listen,
            backends=backends,
            database_url=database_url,
            extra_args=extra_args,
            more_notes=more_notes,
        )
        if service == "gateway":
            env = {**GATEWAY_BENCH_LIMITS, **(env or {})}
        process = group.spawn(name, argv, SERVER_CORE, env)
        address, metrics_address = _bound_addresses(process, metrics_listen)
        h2probe.wait_until_serving(address, STARTUP_TIMEOUT_S, lambda: not process.exited())
        return Server(name, process, address, metrics_address)

    def start_suite(self, group: ProcessGroup) -> tuple[Server, Server, Server]:
        """users, notes and a gateway in front of them: three processes."""
        users = self.start(group, "users")
        notes = self.start(group, "notes")
        gateway = self.start(group, "gateway", backends=(users, notes))
        return users, notes, gateway


# The load comes from one user and one address, far above any per-user limit: the per-user
# limits are set high enough never to refuse a call (so their check is still measured), and
# the per-address credential limits are off. Environment variables, so that a binary from
# before the limits still starts.
GATEWAY_BENCH_LIMITS = {
    "NOTESUITE_RATE_LIMIT_READ": "1000000000/s",
    "NOTESUITE_RATE_LIMIT_WRITE": "1000000000/s",
    "NOTESUITE_RATE_LIMIT_STREAM": "1000000000/s",
    "NOTESUITE_RATE_LIMIT_LOGIN_ADDRESS": "off",
    "NOTESUITE_RATE_LIMIT_LOGIN_ACCOUNT": "off",
    "NOTESUITE_RATE_LIMIT_SIGN_UP_ADDRESS": "off",
    # The load runs up to 1,000 calls in flight for its one user.
    "NOTESUITE_RATE_LIMIT_CALLS_IN_FLIGHT": "off",
    "NOTESUITE_RATE_LIMIT_STREAMS_OPEN": "off",
}


def _bound_addresses(process: Process, metrics_listen: str) -> tuple[str, str]:
    """Reads the gRPC and metrics addresses from the service's JSON log lines; the metrics
    address is `metrics_listen` when no line names it by the time the service serves (it binds
    metrics first)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    grpc_address = metrics_address = None
    while time.monotonic() < deadline:
        for line in process.stderr_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("message") == "serving":
                grpc_address = entry["address"]
            elif entry.get("message", "").startswith("serving metrics"):
                metrics_address = entry["address"]
        if grpc_address:
            return grpc_address, metrics_address or metrics_listen
        if process.exited():
            break
        time.sleep(0.01)
    raise RuntimeError(f"{process.name} did not say where it serves:\n{process.stderr_tail()}")


@dataclass(frozen=True)
class PeerKind:
    name: str
    binary: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


PEER_KINDS = (
    PeerKind("grpc-go", "go-health-peer", env=(("GOMAXPROCS", "1"),)),
    PeerKind("grpc-c++", "cpp-health-peer"),
    PeerKind("tonic current", "tonic-health-peer", args=("current",)),
    PeerKind("tonic multi", "tonic-health-peer", args=("multi",)),
)


class Peers:
    """The reference health servers built by ../shared/peers/build.sh."""

    def __init__(self, directory: Path):
        self.directory = directory
        missing = [kind.binary for kind in PEER_KINDS if not (directory / kind.binary).is_file()]
        if missing:
            raise FileNotFoundError(f"peers missing from {directory}: {', '.join(missing)}")

    def argv(self, kind: PeerKind, port: int) -> list[str]:
        return [str(self.directory / kind.binary), str(port), *kind.args]

    def start(self, group: ProcessGroup, kind: PeerKind) -> Server:
        port = free_port()
        process = group.spawn(kind.name, self.argv(kind, port), env=dict(kind.env))
        address = f"127.0.0.1:{port}"
        h2probe.wait_until_serving(address, STARTUP_TIMEOUT_S, lambda: not process.exited())
        return Server(kind.name, process, address)
