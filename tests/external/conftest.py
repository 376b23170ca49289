"""External-client tests: the real `notesuite` binary, called the way users call it.

Tools come from the environment, relative to the repository root:
  NOTESUITE_BIN (default target/debug/notesuite), GRPCURL (default .tools/grpcurl),
  BUF (default .venv/bin/buf). scripts/install-test-tools installs grpcurl and buf.

Python stubs are generated from proto/ with grpc_tools.protoc into a temporary directory when
pytest starts, so test modules import them as `notesuite.<service>.v1.<service>_pb2`.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.resources
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

# The stubs generated from proto/ (`notesuite.*`) exist only once pytest_configure has run, so
# this module imports them inside the functions that use them.

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"

STARTUP_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 15
CALL_TIMEOUT_S = 10
TOOL_TIMEOUT_S = 60
PASSWORD = "correct horse battery"

PORTS = ("gateway", "users", "notes")
SERVICE_NAMES = {
    "gateway": "notesuite.gateway.v1.GatewayService",
    "users": "notesuite.users.v1.UsersService",
    "notes": "notesuite.notes.v1.NotesService",
}
COMMON_SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]
# What reflection lists on each port: the gateway also serves the services it forwards to.
EXPECTED_SERVICES = {
    "gateway": sorted([*COMMON_SERVICES, *SERVICE_NAMES.values()]),
    "users": sorted([*COMMON_SERVICES, SERVICE_NAMES["users"]]),
    "notes": sorted([*COMMON_SERVICES, SERVICE_NAMES["notes"]]),
}


def _tool_path(env_var: str, default: str) -> Path:
    path = Path(os.environ.get(env_var, default))
    return path if path.is_absolute() else REPO_ROOT / path


NOTESUITE_BIN = _tool_path("NOTESUITE_BIN", "target/debug/notesuite")
GRPCURL = _tool_path("GRPCURL", ".tools/grpcurl")
BUF = _tool_path("BUF", ".venv/bin/buf")

_stubs_dir: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Generates the Python stubs before test modules are imported."""
    global _stubs_dir
    from grpc_tools import protoc

    _stubs_dir = tempfile.mkdtemp(prefix="notesuite-stubs-")
    well_known_types = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    exit_code = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--proto_path={well_known_types}",
            f"--python_out={_stubs_dir}",
            f"--grpc_python_out={_stubs_dir}",
            *protos,
        ]
    )
    if exit_code != 0:
        raise pytest.UsageError(f"grpc_tools.protoc failed ({exit_code}) on {protos}")
    sys.path.insert(0, _stubs_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _stubs_dir is not None:
        shutil.rmtree(_stubs_dir, ignore_errors=True)
    for name in sorted(_postgres_databases):
        subprocess.run(
            ["psql", POSTGRES_SERVER, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            check=False,
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
        )


# --- Which database the suite runs on ----------------------------------------------------------

# NOTESUITE_TEST_BACKEND=postgres runs every suite on PostgreSQL (`up --database-url`), on the
# server NOTESUITE_TEST_POSTGRES, in databases of this run's own, dropped when pytest ends.
BACKEND = os.environ.get("NOTESUITE_TEST_BACKEND", "sqlite")
POSTGRES_SERVER = os.environ.get("NOTESUITE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
_RUN_ID = uuid.uuid4().hex[:12]
_postgres_databases: set[str] = set()


def database_args(data_dir: Path) -> list[str]:
    """`up` options that put the suite's data where BACKEND says: one data directory is one
    pair of PostgreSQL databases, so a restart on the same directory finds its data again."""
    if BACKEND == "sqlite":
        return []
    if BACKEND != "postgres":
        raise pytest.UsageError(f"NOTESUITE_TEST_BACKEND={BACKEND!r}: use sqlite or postgres")
    name = f"notesuite_ext_{_RUN_ID}_{hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]}"
    _postgres_databases.update({f"{name}_users", f"{name}_notes"})
    return ["--database-url", f"{POSTGRES_SERVER.rsplit('/', 1)[0]}/{name}"]


# --- Running the suite -----------------------------------------------------------------------


@dataclass
class Suite:
    """A running `notesuite up` process and what its banner said."""

    process: subprocess.Popen
    banner: str
    gateway: str
    users: str
    notes: str
    stderr_path: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def addresses(self) -> dict[str, str]:
        return {"gateway": self.gateway, "users": self.users, "notes": self.notes}

    def channel(self, port: str = "gateway") -> grpc.Channel:
        """A channel to one of the three ports whose calls get a deadline unless they set one."""
        channel = grpc.insecure_channel(self.addresses[port])
        self.channels.append(channel)
        return grpc.intercept_channel(channel, DefaultDeadline(CALL_TIMEOUT_S))

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, signal_number: int = signal.SIGTERM) -> int | None:
        """Signals the suite to stop and returns its exit code (None if it did not exit in time)."""
        self.process.send_signal(signal_number)
        return self.wait()

    def wait(self) -> int | None:
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            for channel in self.channels:
                channel.close()


class DefaultDeadline(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Gives every call a deadline, so a server that stops answering fails a test instead of
    hanging the run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _with_deadline(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if details.timeout is not None:
            return details
        return _CallDetails(
            details.method,
            self.seconds,
            details.metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_deadline(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_deadline(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_deadline(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_deadline(details), requests)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"]
    ),
    grpc.ClientCallDetails,
):
    pass


ANY_FREE_PORTS = ("--gateway-port", "0", "--users-port", "0", "--notes-port", "0", "--metrics-listen", "127.0.0.1:0")
BANNER_ADDRESS = re.compile(r"^\s+(gateway|users|notes)\s+(\S+:\d+)", re.MULTILINE)
BANNER_LAST_LINE = "Ctrl-C stops the suite."
# The suites sign many accounts up from one address and drive one user hard; the gateway's rate
# limits have tests of their own (a test's own `env` or flags still set one).
NO_RATE_LIMITS = {
    f"NOTESUITE_RATE_LIMIT_{name}": "off"
    for name in (
        "READ",
        "WRITE",
        "STREAM",
        "LOGIN_ADDRESS",
        "LOGIN_ACCOUNT",
        "SIGN_UP_ADDRESS",
        "CALLS_IN_FLIGHT",
        "STREAMS_OPEN",
    )
}


def start_suite(data_dir: Path, *extra_args: str, env: dict[str, str] | None = None) -> Suite:
    """Starts `notesuite up` on free ports and returns once all three services are SERVING."""
    if not NOTESUITE_BIN.exists():
        pytest.fail(f"{NOTESUITE_BIN} is missing: run `cargo build -p notesuite` or set NOTESUITE_BIN")
    stderr_path = data_dir.with_name(data_dir.name + ".stderr.log")
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [
                str(NOTESUITE_BIN),
                "up",
                "--data-dir",
                str(data_dir),
                *database_args(data_dir),
                *ANY_FREE_PORTS,
                *extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "NOTESUITE_LOG_FORMAT": "json", **NO_RATE_LIMITS, **(env or {})},
        )
    try:
        banner = _read_banner(process)
        addresses = dict(BANNER_ADDRESS.findall(banner))
        assert addresses.keys() == set(PORTS), f"unexpected banner: {banner}"
        suite = Suite(process, banner, stderr_path=stderr_path, **addresses)
        for address in suite.addresses.values():
            wait_until_serving(address)
    except BaseException:
        process.kill()
        process.wait()
        print(f"notesuite stderr:\n{stderr_path.read_text(errors='replace')}", file=sys.stderr)
        raise
    return suite


def _read_banner(process: subprocess.Popen) -> str:
    # A reader thread keeps draining stdout after the banner, so the server never blocks on
    # a full pipe, and lets the wait for the banner have a deadline.
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no complete banner within {STARTUP_TIMEOUT_S}s: {''.join(banner)!r}") from None
        if line is None:
            raise AssertionError(f"notesuite exited ({process.wait()}) before its banner: {''.join(banner)!r}")
        banner.append(line)
        if line.strip() == BANNER_LAST_LINE:
            return "".join(banner)


def wait_until_serving(address: str, service: str = "") -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{address} not SERVING within {STARTUP_TIMEOUT_S}s")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    """The suite most tests share, on a fresh data directory."""
    running = start_suite(tmp_path_factory.mktemp("suite") / "data")
    yield running
    exit_code = running.stop()
    assert exit_code == 0, f"notesuite exited with {exit_code} after SIGTERM:\n{running.logs()[-4000:]}"


@pytest.fixture(scope="session")
def other_suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    """A second, independent suite: it signs tokens with a different throwaway key."""
    running = start_suite(tmp_path_factory.mktemp("other-suite") / "data")
    yield running
    assert running.stop() == 0


@pytest.fixture
def start(tmp_path: Path):
    """Starts suites for one test; stops any still running at its end."""
    started: list[Suite] = []

    def _start(data_dir: Path, *extra_args: str, env: dict[str, str] | None = None) -> Suite:
        started.append(start_suite(data_dir, *extra_args, env=env))
        return started[-1]

    yield _start
    for running in started:
        if running.process.poll() is None:
            running.stop()


# --- Clients ---------------------------------------------------------------------------------


@dataclass
class Account:
    email: str
    password: str
    user: object  # notesuite.users.v1.User
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.token)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def sign_up_on(channel: grpc.Channel, display_name: str = "Ada") -> Account:
    """Signs up a new account with a unique email through the gateway at `channel`."""
    from notesuite.gateway.v1 import gateway_pb2, gateway_pb2_grpc

    email = unique_email()
    response = gateway_pb2_grpc.GatewayServiceStub(channel).SignUp(
        gateway_pb2.SignUpRequest(email=email, display_name=display_name, password=PASSWORD)
    )
    return Account(email, PASSWORD, response.user, response.access_token)


@pytest.fixture(scope="session")
def gateway_channel(suite: Suite) -> grpc.Channel:
    return suite.channel("gateway")


@pytest.fixture(scope="session")
def gateway(gateway_channel):
    from notesuite.gateway.v1 import gateway_pb2_grpc

    return gateway_pb2_grpc.GatewayServiceStub(gateway_channel)


@pytest.fixture(scope="session")
def notes(gateway_channel):
    """NotesService through the gateway."""
    from notesuite.notes.v1 import notes_pb2_grpc

    return notes_pb2_grpc.NotesServiceStub(gateway_channel)


@pytest.fixture(scope="session")
def users(gateway_channel):
    """UsersService through the gateway."""
    from notesuite.users.v1 import users_pb2_grpc

    return users_pb2_grpc.UsersServiceStub(gateway_channel)


@pytest.fixture
def sign_up(gateway_channel):
    """Signs up a new account with a unique email: `sign_up(display_name="Ada")`."""
    return lambda display_name="Ada": sign_up_on(gateway_channel, display_name)


@pytest.fixture
def account(sign_up) -> Account:
    return sign_up()


# --- Errors ----------------------------------------------------------------------------------


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str | None
    domain: str | None
    fields: list[str]
    retry_delay: float | None = None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """The status of a failed call with its google.rpc ErrorInfo and BadRequest details."""
    reason = domain = retry_delay = None
    fields: list[str] = []
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = info.reason, info.domain
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = [violation.field for violation in bad_request.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            retry_delay = retry_info.retry_delay.ToTimedelta().total_seconds()
    return ErrorDetails(error.code(), error.details(), reason, domain, fields, retry_delay)


def expect_error(call, request, *, metadata=()) -> ErrorDetails:
    """Makes a call that must fail and returns its error details."""
    with pytest.raises(grpc.RpcError) as failure:
        call(request, metadata=metadata)
    return error_details(failure.value)


# --- Command-line tools ----------------------------------------------------------------------


def run(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Runs a command to completion, capturing its output as text; `stdin` is its input."""
    return subprocess.run(
        [str(arg) for arg in args],
        input=stdin,
        # The caller asserts on the exit code: a failure is often what a test expects.
        check=False,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        env=None if env is None else {**os.environ, **env},
    )


def require_tool(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install-test-tools")


# --- Reports ---------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter) -> None:
    """Prints what test_protocol_abuse measured (scripts/test runs pytest without -s)."""
    lines = [
        value
        for category in ("passed", "failed")
        for report in terminalreporter.getreports(category)
        if report.when == "call"
        for name, value in report.user_properties
        if name == "protocol_abuse"
    ]
    if lines:
        terminalreporter.section("protocol abuse: what each attack got, RSS before/peak/after, the bystander")
        for line in lines:
            terminalreporter.line(line)
