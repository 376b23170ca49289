"""How `notesuite up` starts and stops as a process: signals, draining, bad settings."""

from __future__ import annotations

import signal
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from notesuite.notes.v1 import notes_pb2, notes_pb2_grpc

from conftest import NOTESUITE_BIN, PORTS, run, sign_up_on

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def watch(suite, port: str, service: str):
    return health_pb2_grpc.HealthStub(suite.channel(port)).Watch(health_pb2.HealthCheckRequest(service=service))


def test_sigterm_turns_readiness_not_serving_while_calls_are_still_served_then_exits_zero(start, tmp_path):
    # The drain delay is the window in which calls must still be answered; it is generous so
    # that a slow machine still makes its few calls inside it.
    suite = start(tmp_path / "data", "--drain-delay", "5s")
    account = sign_up_on(suite.channel("gateway"))
    readiness = {port: watch(suite, port, "") for port in PORTS}
    liveness = {port: watch(suite, port, "liveness") for port in PORTS}
    for port in PORTS:
        assert next(readiness[port]).status == SERVING
        assert next(liveness[port]).status == SERVING

    suite.process.send_signal(signal.SIGTERM)

    for port in PORTS:
        assert next(readiness[port]).status == NOT_SERVING
    for port in PORTS:
        health = health_pb2_grpc.HealthStub(suite.channel(port))
        assert health.Check(health_pb2.HealthCheckRequest(service="liveness")).status == SERVING
    notes = notes_pb2_grpc.NotesServiceStub(suite.channel("gateway"))
    assert notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=account.metadata).total_size == 0

    # Once the drain delay is over, open streams are ended with UNAVAILABLE.
    for port in PORTS:
        with pytest.raises(grpc.RpcError) as ended:
            list(liveness[port])
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert suite.wait() == 0


def test_sigint_stops_the_suite_with_exit_code_zero(start, tmp_path):
    suite = start(tmp_path / "data")
    assert suite.stop(signal.SIGINT) == 0


def test_up_fails_naming_the_setting_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = ("--gateway-port", str(port), "--users-port", "0", "--notes-port", "0")
        ports += ("--metrics-listen", "127.0.0.1:0")
        result = run(NOTESUITE_BIN, "up", "--data-dir", tmp_path / "data", *ports)
    assert result.returncode != 0
    assert "--gateway-port" in result.stderr
    assert "notesuite is up" not in result.stdout


@pytest.mark.parametrize("option, value", [("--drain-delay", "soon"), ("--gateway-port", "70000")])
def test_up_rejects_an_invalid_setting_naming_it(tmp_path, option, value):
    result = run(NOTESUITE_BIN, "up", "--data-dir", tmp_path / "data", option, value)
    assert result.returncode != 0
    assert option in result.stderr
    assert not (tmp_path / "data").exists()
