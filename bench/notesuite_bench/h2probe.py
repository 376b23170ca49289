"""grpc.health.v1.Health/Check over a raw HTTP/2 connection (the `h2` library).

Raw on purpose: a start-up time or a per-connection memory cost must not include a gRPC
client's own machinery (channels, resolvers, background threads, reconnect back-off).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions

HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
# A gRPC message frame: not compressed, length 0 (HealthCheckRequest{service: ""}).
EMPTY_HEALTH_CHECK_REQUEST = b"\x00\x00\x00\x00\x00"
# HealthCheckResponse{status: SERVING}: field 1, varint 1.
SERVING_MESSAGE = b"\x08\x01"
READ_SIZE = 65536

# What a connection attempt may raise while a server is still starting.
NOT_YET = (OSError, EOFError, h2.exceptions.ProtocolError)


@dataclass(frozen=True)
class HealthAnswer:
    grpc_status: int | None
    serving: bool

    @property
    def ok(self) -> bool:
        return self.grpc_status == 0 and self.serving


class HealthConnection:
    """One client HTTP/2 connection: preface and SETTINGS exchanged, then health checks."""

    def __init__(self, address: str, timeout_s: float = 5.0):
        host, port = address.rsplit(":", 1)
        self.authority = address
        self.socket = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.settings_acknowledged = False
        self._flush()

    def check(self) -> HealthAnswer:
        """One Health/Check; returns once the call ended and the server acknowledged our
        SETTINGS (so the connection is fully set up on both sides)."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", self.authority),
                (":path", HEALTH_CHECK_PATH),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.h2.send_data(stream_id, EMPTY_HEALTH_CHECK_REQUEST, end_stream=True)
        self._flush()
        grpc_status: int | None = None
        body = b""
        ended = False
        while not (ended and self.settings_acknowledged):
            data = self.socket.recv(READ_SIZE)
            if not data:
                raise EOFError("connection closed by the server")
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.SettingsAcknowledged):
                    self.settings_acknowledged = True
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    grpc_status = _grpc_status(event.headers, grpc_status)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = ended or event.stream_id == stream_id
                elif isinstance(event, h2.events.ConnectionTerminated):
                    # EOFError, not TypeError: the server went away, which NOT_YET retries.
                    raise EOFError(f"GOAWAY from the server: {event.error_code}")  # noqa: TRY004
            self._flush()
        return HealthAnswer(grpc_status, body[5:] == SERVING_MESSAGE)

    def close(self) -> None:
        self.socket.close()

    def _flush(self) -> None:
        outbound = self.h2.data_to_send()
        if outbound:
            self.socket.sendall(outbound)


def _grpc_status(headers: list[tuple[str, str]], current: int | None) -> int | None:
    for name, value in headers:
        if name == "grpc-status":
            return int(value)
    return current


def check_once(address: str, timeout_s: float = 5.0) -> HealthAnswer:
    """A health check on a fresh connection, closed afterwards."""
    connection = HealthConnection(address, timeout_s)
    try:
        return connection.check()
    finally:
        connection.close()


def wait_until_serving(address: str, timeout_s: float, is_alive=lambda: True) -> float:
    """Retries a health check on a fresh connection, with no pause, until it answers grpc-status
    0 and SERVING; returns the perf_counter() of that answer."""
    deadline = time.perf_counter() + timeout_s
    last_problem = "no attempt"
    while time.perf_counter() < deadline:
        if not is_alive():
            raise RuntimeError(f"{address}: the server exited before it served")
        try:
            answer = check_once(address, timeout_s=1.0)
        except NOT_YET as error:
            last_problem = repr(error)
            continue
        if answer.ok:
            return time.perf_counter()
        last_problem = f"answered {answer}"
    raise TimeoutError(f"{address}: no SERVING health check within {timeout_s}s ({last_problem})")
