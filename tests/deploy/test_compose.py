"""deploy/compose.yaml: no Docker engine runs here, so every flag, variable, port and file it
hands to notesuite is checked against the binary itself, and the stack's notesuite services
are run locally as compose would run them (service names mapped to loopback addresses, named
volumes to directories, the postgres service to this machine's PostgreSQL)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import DEPLOY, NOTESUITE_BIN, REPO_ROOT, run
from kube import IMAGE_ENTRYPOINT, map_paths
from test_render_and_run import POSTGRES, psql

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
NOTESUITE = {
    name: service for name, service in SERVICES.items() if str(service.get("image", "")).startswith("notesuite:")
}
SERVERS = ("users", "notes", "gateway")


def help_text(*subcommand: str) -> str:
    result = run(NOTESUITE_BIN, *subcommand, "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def flags_of(arguments: list[str]) -> list[str]:
    return [argument.split("=", 1)[0] for argument in arguments if argument.startswith("--")]


def telemetry_variables() -> set[str]:
    """The OTEL_* variables notesuite documents or reads itself."""
    sources = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "crates" / "telemetry" / "src").glob("*.rs"))]
    return {name for source in sources for name in re.findall(r"\bOTEL_[A-Z_]+[A-Z]\b", source.read_text())}


def test_the_stack_has_every_service_the_issue_lists():
    assert set(SERVICES) == {
        "postgres",
        "keygen",
        "users",
        "notes",
        "gateway",
        "otel-collector",
        "jaeger",
        "prometheus",
    }
    assert set(NOTESUITE) == {"keygen", *SERVERS}
    for name in SERVERS:
        conditions = {dependency: spec["condition"] for dependency, spec in SERVICES[name]["depends_on"].items()}
        assert "service_healthy" in conditions.values(), name
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name
    assert SERVICES["users"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["gateway"]["depends_on"] == {
        "users": {"condition": "service_healthy"},
        "notes": {"condition": "service_healthy"},
    }
    assert SERVICES["users"]["depends_on"]["keygen"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(NOTESUITE))
def test_every_flag_and_variable_is_one_the_binary_accepts(name):
    service = NOTESUITE[name]
    subcommand, *arguments = service["command"]
    documented = help_text(subcommand)
    for flag in flags_of(arguments):
        assert re.search(rf"\s{re.escape(flag)}\b", documented), f"{name}: notesuite {subcommand} has no {flag}"
    known_otel = telemetry_variables()
    for variable in service.get("environment") or {}:
        if variable.startswith("NOTESUITE_"):
            assert f"[env: {variable}=" in documented, f"{name}: notesuite {subcommand} reads no {variable}"
        elif variable.startswith("OTEL_"):
            assert variable in known_otel, f"{name}: {variable} is not a variable notesuite reads"
        else:
            assert variable == "RUST_LOG", f"{name}: unexpected variable {variable}"


@pytest.mark.parametrize("name", SERVERS)
def test_healthchecks_call_notesuite_health_with_flags_it_accepts(name):
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[1] == IMAGE_ENTRYPOINT[0] and test[2] == "health"
    documented = help_text("health")
    for flag in flags_of(test[3:]):
        assert re.search(rf"\s{re.escape(flag)}\b", documented), flag
    service = test[test.index("--service") + 1]
    assert service == f"notesuite.{name}.v1.{name.capitalize()}Service"


def listen_port(name: str, variable: str = "NOTESUITE_LISTEN") -> int:
    return int(SERVICES[name]["environment"][variable].rsplit(":", 1)[1])


def test_ports_and_addresses_agree_across_the_stack():
    gateway_env = SERVICES["gateway"]["environment"]
    assert gateway_env["NOTESUITE_USERS_URL"] == f"http://users:{listen_port('users')}"
    assert gateway_env["NOTESUITE_NOTES_URL"] == f"http://notes:{listen_port('notes')}"
    assert SERVICES["gateway"]["ports"] == [f"{listen_port('gateway')}:{listen_port('gateway')}"]
    # Prometheus scrapes each service's --metrics-listen port, and the collector's own.
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target for job in prometheus["scrape_configs"] for group in job["static_configs"] for target in group["targets"]
    }
    collector = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    (reader,) = collector["service"]["telemetry"]["metrics"]["readers"]
    assert targets == {
        *(f"{name}:{listen_port(name, 'NOTESUITE_METRICS_LISTEN')}" for name in SERVERS),
        f"otel-collector:{reader['pull']['exporter']['prometheus']['port']}",
    }
    # The services export to the collector's OTLP/gRPC receiver; the collector to Jaeger's.
    receiver = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    for name in SERVERS:
        endpoint = SERVICES[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == f"http://otel-collector:{receiver.rsplit(':', 1)[1]}"
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]


def test_files_passed_to_notesuite_are_in_volumes_keygen_writes():
    keygen = SERVICES["keygen"]["command"]
    written = {keygen[keygen.index("--private-key-out") + 1], keygen[keygen.index("--public-key-out") + 1]}

    def volume_of(service, path):
        return next(
            volume.split(":")[0] for volume in service["volumes"] if path.startswith(volume.split(":")[1] + "/")
        )

    for name, variable in [
        ("gateway", "NOTESUITE_JWT_PRIVATE_KEY"),
        ("users", "NOTESUITE_JWT_PUBLIC_KEY"),
        ("notes", "NOTESUITE_JWT_PUBLIC_KEY"),
    ]:
        path = SERVICES[name]["environment"][variable]
        assert path in written, (name, path)
        assert volume_of(SERVICES[name], path) == volume_of(SERVICES["keygen"], path), name
    # The private key's volume is mounted into the gateway only.
    private_volume = volume_of(SERVICES["keygen"], SERVICES["gateway"]["environment"]["NOTESUITE_JWT_PRIVATE_KEY"])
    mounted = [
        name for name in NOTESUITE if any(v.split(":")[0] == private_volume for v in NOTESUITE[name].get("volumes", []))
    ]
    assert sorted(mounted) == ["gateway", "keygen"]
    # The drain fits in compose's stop grace period.
    assert NOTESUITE["gateway"]["stop_grace_period"] == "30s"


# --- Running the notesuite part of the stack ---------------------------------------------


class LocalStack:
    """The notesuite services of compose.yaml as local processes."""

    def __init__(self, workdir: Path, databases: dict[str, str]):
        self.workdir = workdir
        self.subnet = f"127.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 250 + 1}"
        self.addresses = {name: f"{self.subnet}.{index + 1}" for index, name in enumerate(SERVICES)}
        self.databases = databases
        self.processes: dict[str, subprocess.Popen] = {}

    def mounts(self, name: str) -> dict[str, str]:
        mounts = {}
        for volume in SERVICES[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            host = self.workdir / "volumes" / source
            host.mkdir(parents=True, exist_ok=True)
            mounts[target] = str(host)
        return mounts

    def rewrite(self, name: str, value: str) -> str:
        value = map_paths(value, self.mounts(name))
        # The stack's PostgreSQL (user notesuite, databases users and notes) is this machine's.
        value = re.sub(
            r"postgres://notesuite:notesuite@postgres:5432/(users|notes)",
            lambda match: (
                f"postgres://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{self.databases[match.group(1)]}"
            ),
            value,
        )
        value = value.replace("0.0.0.0:", f"{self.addresses[name]}:")
        for other, address in self.addresses.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(other)}(?=:\d)", address, value)
        return value

    def environment(self, name: str) -> dict[str, str]:
        return {key: self.rewrite(name, str(value)) for key, value in (SERVICES[name].get("environment") or {}).items()}

    def argv(self, name: str, command: list[str]) -> list[str]:
        return [str(NOTESUITE_BIN), *(self.rewrite(name, part) for part in command)]

    def run(self, name: str, command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(name, command),
            env=self.environment(name),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, name: str) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                self.argv(name, SERVICES[name]["command"]), env=self.environment(name), stdout=log, stderr=log
            )

    def healthy(self, name: str) -> None:
        """Runs the service's compose healthcheck (`CMD ...`) until it passes or retries run out."""
        check = SERVICES[name]["healthcheck"]
        command = check["test"][2:]
        attempts = check["retries"] + 10
        for _ in range(attempts):
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited with {self.processes[name].returncode}:\n{self.logs(name)}")
            result = self.run(name, command)
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} never became healthy: {result.stderr}\n{self.logs(name)}")

    def logs(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def compose_databases():

    suffix = uuid.uuid4().hex[:12]
    names = {"users": f"notesuite_compose_users_{suffix}", "notes": f"notesuite_compose_notes_{suffix}"}
    psql(*(f'CREATE DATABASE "{name}"' for name in names.values()))
    yield names
    psql(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names.values()))


def test_keygen_makes_the_keys_once_and_keeps_them_on_the_next_start(tmp_path):
    stack = LocalStack(tmp_path, {})
    first = stack.run("keygen", SERVICES["keygen"]["command"])
    assert first.returncode == 0, first.stderr
    private = Path(stack.rewrite("keygen", SERVICES["gateway"]["environment"]["NOTESUITE_JWT_PRIVATE_KEY"]))
    before = private.read_bytes()
    again = stack.run("keygen", SERVICES["keygen"]["command"])
    assert again.returncode == 0 and "kept the existing" in again.stdout, again.stderr
    assert private.read_bytes() == before


@pytest.mark.postgres
def test_the_notesuite_services_start_and_answer_as_compose_runs_them(tmp_path, compose_databases):
    stack = LocalStack(tmp_path, compose_databases)
    try:
        assert stack.run("keygen", SERVICES["keygen"]["command"]).returncode == 0
        for name in ("users", "notes"):
            stack.start(name)
        for name in ("users", "notes"):
            stack.healthy(name)
        stack.start("gateway")
        stack.healthy("gateway")
        for name in SERVERS:
            port = listen_port(name, "NOTESUITE_METRICS_LISTEN")
            with urllib.request.urlopen(f"http://{stack.addresses[name]}:{port}/metrics", timeout=5) as response:
                assert b"rpc_server_call_duration_seconds" in response.read()
        gateway = f"{stack.addresses['gateway']}:{listen_port('gateway')}"
        check = run(NOTESUITE_BIN, "check", "--gateway", gateway)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        stack.stop()
