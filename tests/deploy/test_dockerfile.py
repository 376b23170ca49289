"""deploy/Dockerfile: hadolint clean, and its runtime stage agrees with what the chart, the
compose file and the render-and-run harness assume (user, entrypoint, ports, directories,
healthcheck). No Docker engine runs here, so the image itself is not built by these tests."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

import kube
from conftest import CHART, DEPLOY, HADOLINT, NOTESUITE_BIN, run

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines() if line.strip()
    ]


def runtime_stage() -> list[tuple[str, str]]:
    parsed = instructions(DOCKERFILE.read_text())
    last_from = max(index for index, (name, _) in enumerate(parsed) if name == "FROM")
    return parsed[last_from:]


def one(stage, name):
    (value,) = [args for instruction, args in stage if instruction == name]
    return value


def test_hadolint_finds_nothing():
    result = run(HADOLINT, "--failure-threshold", "info", DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_base_image_is_pinned():
    text = DOCKERFILE.read_text()
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert re.fullmatch(r"rust:\d+\.\d+\.\d+-slim-bookworm", arguments["RUST_IMAGE"])
    assert re.fullmatch(r"gcr\.io/distroless/cc-debian12:nonroot@sha256:[0-9a-f]{64}", arguments["RUNTIME_IMAGE"])
    assert "cargo install cargo-chef --locked --version " in text


def test_dependencies_build_in_a_layer_before_the_sources_are_copied():
    parsed = instructions(DOCKERFILE.read_text())
    builder = parsed[next(i for i, (n, a) in enumerate(parsed) if n == "FROM" and a.endswith("AS builder")) :]
    steps = [f"{name} {args}" for name, args in builder]
    cook = next(i for i, step in enumerate(steps) if "cargo chef cook" in step)
    sources = next(i for i, step in enumerate(steps) if step == "COPY . .")
    assert steps[cook - 1].startswith("COPY --from=planner") and cook < sources


def test_runtime_user_is_the_uid_the_chart_runs_as():
    user = one(runtime_stage(), "USER")
    uid, gid = (int(part) for part in user.split(":"))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid >= 10000
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (uid, gid)
    assert (values["securityContext"]["runAsUser"], values["securityContext"]["runAsGroup"]) == (uid, gid)


def test_entrypoint_cmd_and_workdir_are_what_the_manifests_rely_on():
    stage = runtime_stage()
    assert json.loads(one(stage, "ENTRYPOINT")) == kube.IMAGE_ENTRYPOINT
    assert json.loads(one(stage, "CMD")) == kube.IMAGE_CMD
    assert one(stage, "WORKDIR") == kube.IMAGE_WORKDIR


def test_exposed_ports_are_the_ports_the_chart_and_compose_serve():
    exposed = {int(port) for port in one(runtime_stage(), "EXPOSE").split()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart_ports = {values[c]["port"] for c in ("users", "notes", "gateway")} | {values["metrics"]["port"]}
    assert exposed == chart_ports
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose_ports = set()
    for service in compose["services"].values():
        env = service.get("environment") or {}
        for name in ("NOTESUITE_LISTEN", "NOTESUITE_METRICS_LISTEN"):
            if name in env:
                compose_ports.add(int(env[name].rsplit(":", 1)[1]))
    assert compose_ports == exposed


def test_the_image_creates_the_directories_the_chart_and_compose_mount():
    (build,) = [args for name, args in instructions(DOCKERFILE.read_text()) if name == "RUN" and "install -d" in args]
    created = set(re.findall(r"/out(/[\w/.-]+)", build.split("install -d", 1)[1]))
    assert {"/var/lib/notesuite", "/etc/notesuite/jwt-private", "/etc/notesuite/jwt-public"} <= created
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    targets = {
        volume.split(":")[1]
        for service in compose["services"].values()
        if str(service.get("image", "")).startswith("notesuite")
        for volume in service.get("volumes", [])
    }
    assert targets <= created, targets - created


@pytest.fixture
def running_gateway(tmp_path):
    process = subprocess.Popen(
        [
            str(NOTESUITE_BIN),
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--gateway-port",
            "0",
            "--users-port",
            "0",
            "--notes-port",
            "0",
            "--metrics-listen",
            "off",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in process.stdout:
            match = re.match(r"\s+gateway\s+(\S+)", line)
            if match:
                yield match.group(1)
                break
    finally:
        process.kill()
        process.wait()


def test_the_healthcheck_asks_the_service_in_the_container(running_gateway):
    healthcheck = one(runtime_stage(), "HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == kube.IMAGE_ENTRYPOINT[0]
    port = running_gateway.rsplit(":", 1)[1]
    # The container's own NOTESUITE_LISTEN, as compose and `docker run -e` set it.
    alive = run(NOTESUITE_BIN, *command[1:], env={"NOTESUITE_LISTEN": f"0.0.0.0:{port}"})
    assert alive.returncode == 0, alive.stderr
    nothing_there = run(NOTESUITE_BIN, *command[1:], env={"NOTESUITE_LISTEN": "0.0.0.0:1"})
    assert nothing_there.returncode == 1 and "cannot connect" in nothing_there.stderr, nothing_there.stderr
