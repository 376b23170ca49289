"""grpcio over TLS: a gateway serving TLS (`--tls-cert`, certificates made with the openssl
CLI), in front of the users and notes of a `notesuite up`, called with
`grpc.ssl_channel_credentials` as a Python client does it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import NO_RATE_LIMITS, NOTESUITE_BIN, STARTUP_TIMEOUT_S, bearer, run, sign_up_on


def openssl(*args) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def certificates(tmp_path):
    """A CA and a certificate for localhost and 127.0.0.1 it signed, as PEM files."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is missing")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        tmp_path / "ca.key",
        "-out",
        tmp_path / "ca.crt",
        "-subj",
        "/CN=test CA",
        "-days",
        "2",
    )
    openssl("req", *ec, "-keyout", tmp_path / "tls.key", "-out", tmp_path / "tls.csr", "-subj", "/CN=localhost")
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        tmp_path / "tls.csr",
        "-CA",
        tmp_path / "ca.crt",
        "-CAkey",
        tmp_path / "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        tmp_path / "san.ext",
        "-out",
        tmp_path / "tls.crt",
    )
    return tmp_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_grpcio_client_calls_the_gateway_over_tls(start, tmp_path, certificates):
    keys = tmp_path / "keys"
    assert run(NOTESUITE_BIN, "keygen", "--out-dir", keys).returncode == 0
    private_key = keys / "jwt-private.pem"
    suite = start(tmp_path / "data", "--jwt-private-key", private_key)
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [
            str(NOTESUITE_BIN),
            "gateway",
            "--listen",
            address,
            "--metrics-listen",
            "off",
            "--users-url",
            f"http://{suite.users}",
            "--notes-url",
            f"http://{suite.notes}",
            "--jwt-private-key",
            str(private_key),
            "--tls-cert",
            str(certificates / "tls.crt"),
            "--tls-key",
            str(certificates / "tls.key"),
            "--drain-delay",
            "0s",
        ],
        stderr=log,
        env={**NO_RATE_LIMITS, "PATH": "/usr/bin:/bin", "NOTESUITE_LOG_FORMAT": "json"},
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=(certificates / "ca.crt").read_bytes())
    try:
        with grpc.secure_channel(address, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text(errors="replace")
                time.sleep(0.05)

            account = sign_up_on(channel)
            from notesuite.gateway.v1 import gateway_pb2, gateway_pb2_grpc

            profile = gateway_pb2_grpc.GatewayServiceStub(channel).GetProfile(
                gateway_pb2.GetProfileRequest(), metadata=bearer(account.token), timeout=10
            )
            assert profile.user.email == account.email

        # A client that does not speak TLS gets nowhere on that port.
        with grpc.insecure_channel(address) as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=30)
        finally:
            if gateway.returncode is None:
                gateway.kill()
            log.close()
