"""Protocol abuse: HTTP/2 and gRPC framing no ordinary client sends, against every port.

Each case runs one attack for a bounded time against one of the three ports of a `notesuite up`
process and checks that:
  1. the process is still alive;
  2. its peak RSS during the attack (VmHWM, reset before the case through /proc/PID/clear_refs,
     and VmRSS sampled every 10 ms) exceeds its RSS before by less than MEMORY_BOUND_KIB;
  3. a well-behaved client is served: health checks on a connection of its own all through the
     attack, and a real call of the port's service (with a token) after it, each within
     BYSTANDER_DEADLINE_S;
  4. the attacker got what the server's limits say (a GOAWAY with its error code, RST_STREAMs,
     a closed connection, RESOURCE_EXHAUSTED naming the size limit).

Most framing attacks end in a GOAWAY from the h2 crate: these tests pin that, so that a
dependency upgrade cannot lose it unnoticed. The attacker is a raw socket speaking frames built
with hyperframe and header blocks built with hpack (the two halves of hyper-h2: h2's own state
machine refuses to send most of these). Every case prints one line (what the attacker got, RSS
before/peak/after, how the bystander fared) in the "protocol abuse" section at the end of the run.
"""

from __future__ import annotations

import collections
import functools
import gzip
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Self

import grpc
import hpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)
from notesuite.notes.v1 import notes_pb2, notes_pb2_grpc
from notesuite.users.v1 import users_pb2, users_pb2_grpc

from conftest import PORTS, sign_up_on, start_suite

# Peak RSS minus RSS before, per case. The largest seen is a few MB; tonic's default message
# limit (4 MiB) on the health service made 200 gzip bombs on one connection cost 31 MB.
MEMORY_BOUND_KIB = 48 * 1024
BYSTANDER_DEADLINE_S = 5
# A connection that never sends the preface is closed after this (`up --handshake-timeout`).
HANDSHAKE_TIMEOUT = "500ms"
# Every wait for the attacker's answer ends by then, answer or not.
ANSWER_WAIT_S = 5

# HTTP/2 error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, STREAM_CLOSED, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x5, 0x7, 0xB
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 16 * 1024
MAX_CONCURRENT_STREAMS = 1024  # `--max-concurrent-streams`' default
SHELL_MAX_REQUEST_BYTES = 16 * 1024  # the health and reflection services' message limit
RESOURCE_EXHAUSTED = "8"

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
# A method of each port's own service that reads its request body once the token is checked.
SERVICE_METHOD = {
    "gateway": "/notesuite.notes.v1.NotesService/CreateNote",
    "notes": "/notesuite.notes.v1.NotesService/CreateNote",
    "users": "/notesuite.users.v1.UsersService/GetUser",
}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# --- A raw HTTP/2 client -------------------------------------------------------------------


@dataclass
class Seen:
    """What the server sent one raw connection."""

    goaway: int | None = None
    resets: collections.Counter = field(default_factory=collections.Counter)
    # Per stream: the headers and trailers received, decoded.
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    frames: collections.Counter = field(default_factory=collections.Counter)
    closed: bool = False

    def grpc_status(self, stream_id: int) -> tuple[str | None, str]:
        received = self.headers.get(stream_id, {})
        return received.get("grpc-status"), received.get("grpc-message", "").replace("%20", " ")

    def describe(self) -> str:
        parts = []
        if self.goaway is not None:
            parts.append(f"GOAWAY({error_name(self.goaway)})")
        parts += [f"{count}×RST_STREAM({error_name(code)})" for code, count in sorted(self.resets.items())]
        if self.closed:
            parts.append("connection closed")
        return ", ".join(parts) or "nothing"


def error_name(code: int) -> str:
    names = {
        NO_ERROR: "NO_ERROR",
        PROTOCOL_ERROR: "PROTOCOL_ERROR",
        STREAM_CLOSED: "STREAM_CLOSED",
        REFUSED_STREAM: "REFUSED_STREAM",
        ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM",
    }
    return names.get(code, hex(code))


class RawConnection:
    """An HTTP/2 connection that sends exactly the frames it is given."""

    def __init__(self, address: str, settings: dict[int, int] | None = None, preface: bool = True):
        host, port = address.rsplit(":", 1)
        self.authority = address
        self.sock = socket.create_connection((host, int(port)), timeout=ANSWER_WAIT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 20)
        self.next_stream_id = 1
        self.seen = Seen()
        self._buffer = b""
        self._header_block = b""
        # Without the preface, an ACK of the server's SETTINGS would be the first bytes the
        # server reads, and it would close the connection for them at once.
        self._acknowledge_settings = preface
        if preface:
            self.sock.sendall(PREFACE + SettingsFrame(0, settings or {}).serialize())

    def wait_for_windows(self) -> None:
        """Waits for the server's SETTINGS and connection WINDOW_UPDATE: until then only the
        protocol's 65,535-byte connection window holds, and a client sending more gets
        GOAWAY(FLOW_CONTROL_ERROR)."""
        self.read(ANSWER_WAIT_S, until=lambda seen: seen.frames["WindowUpdateFrame"] > 0)

    def new_stream(self) -> int:
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        return stream_id

    def header_block(self, path: str, *extra: tuple[str, str]) -> bytes:
        return self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", self.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *extra,
            ]
        )

    @staticmethod
    def headers_frames(stream_id: int, block: bytes) -> list:
        """`block` as HEADERS and as many CONTINUATIONs as the maximum frame size needs."""
        chunks = [block[i : i + MAX_FRAME_SIZE] for i in range(0, len(block), MAX_FRAME_SIZE)]
        frames = [HeadersFrame(stream_id, chunks[0]), *(ContinuationFrame(stream_id, c) for c in chunks[1:])]
        frames[-1].flags.add("END_HEADERS")
        return frames

    def unary(self, path: str, message: bytes, *extra: tuple[str, str]) -> int:
        """Sends one whole call; returns its stream id."""
        stream_id = self.new_stream()
        frames = self.headers_frames(stream_id, self.header_block(path, *extra))
        chunks = [message[i : i + MAX_FRAME_SIZE] for i in range(0, len(message), MAX_FRAME_SIZE)] or [b""]
        frames += [DataFrame(stream_id, chunk) for chunk in chunks]
        frames[-1].flags.add("END_STREAM")
        self.send(*frames)
        return stream_id

    def send(self, *frames) -> None:
        self.sock.sendall(b"".join(frame.serialize() for frame in frames))

    def read(self, seconds: float, until=None) -> Seen:
        """Reads frames for up to `seconds`, until the server closes, or until `until(seen)`."""
        deadline = time.monotonic() + seconds
        while not self.seen.closed and not (until and until(self.seen)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.seen.closed = True
                break
            self._buffer += chunk
            self._parse()
        return self.seen

    def _parse(self) -> None:
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                return
            frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
            self._buffer = self._buffer[9 + length :]
            self._on_frame(frame)

    def _on_frame(self, frame) -> None:
        self.seen.frames[type(frame).__name__] += 1
        if isinstance(frame, GoAwayFrame):
            self.seen.goaway = frame.error_code
        elif isinstance(frame, RstStreamFrame):
            self.seen.resets[frame.error_code] += 1
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and self._acknowledge_settings:
            self.send_quietly(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            # The decoder's table must see every block, in order, to stay in step.
            self._header_block += frame.data
            if "END_HEADERS" in frame.flags:
                decoded = self.decoder.decode(self._header_block, raw=False)
                self._header_block = b""
                self.seen.headers.setdefault(frame.stream_id, {}).update(decoded)

    def send_quietly(self, *frames) -> bool:
        """Sends unless the server has closed or stopped reading; says whether it could."""
        try:
            self.sock.settimeout(1)
            self.send(*frames)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


def grpc_frame(payload: bytes, *, compressed: bool = False, claimed_length: int | None = None) -> bytes:
    """A gRPC length-prefixed message; `claimed_length` makes the prefix lie."""
    length = len(payload) if claimed_length is None else claimed_length
    return struct.pack(">BI", 1 if compressed else 0, length) + payload


# --- Measuring the process -----------------------------------------------------------------


def status_kib(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


class MemoryWatch:
    """RSS before, peak and after one case."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = self.peak = self.after = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Self:
        # "5" resets VmHWM to the current RSS (proc(5)); sampling still catches the peak where
        # the file is not writable.
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        except OSError:
            pass
        self.before = self.peak = status_kib(self.pid, "VmRSS")
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            except (OSError, AssertionError):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()
        self.peak = max(self.peak, status_kib(self.pid, "VmHWM"))
        self.after = status_kib(self.pid, "VmRSS")

    def __str__(self) -> str:
        before, peak, after = (kib / 1024 for kib in (self.before, self.peak, self.after))
        return f"RSS before {before:.1f} MiB, peak {peak:.1f} (+{peak - before:.1f}), after {after:.1f}"


class Bystander:
    """A well-behaved client on a connection of its own: health checks every 50 ms while the
    attack runs."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.served = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # Connected before the attack: a flood of connections must not take this one's place.
        self.check()

    def check(self) -> None:
        started = time.monotonic()
        try:
            response = self.health.Check(health_pb2.HealthCheckRequest(), timeout=BYSTANDER_DEADLINE_S)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
            self.served += 1
        except grpc.RpcError as error:
            self.failures.append(f"{error.code().name}: {error.details()}")
        self.slowest = max(self.slowest, time.monotonic() - started)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.check()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.check()
        self.channel.close()

    def __str__(self) -> str:
        failed = f", {len(self.failures)} failed ({self.failures[0]})" if self.failures else ""
        return f"bystander: {self.served} health checks served (slowest {self.slowest * 1000:.0f} ms){failed}"


# --- The suites under attack ---------------------------------------------------------------


@dataclass
class Target:
    suite: object
    token: str
    user_id: str

    def address(self, port: str) -> str:
        return self.suite.addresses[port]

    def real_call(self, port: str) -> None:
        """A call of the port's own service with the Python stubs, as users make them."""
        channel = self.suite.channel(port)
        metadata = (("authorization", f"Bearer {self.token}"),)
        if port == "users":
            request = users_pb2.GetUserRequest(id=self.user_id)
            users_pb2_grpc.UsersServiceStub(channel).GetUser(request, metadata=metadata, timeout=BYSTANDER_DEADLINE_S)
        else:
            notes = notes_pb2_grpc.NotesServiceStub(channel)
            notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=metadata, timeout=BYSTANDER_DEADLINE_S)


def _target(tmp_path_factory, name: str, *args: str):
    suite = start_suite(tmp_path_factory.mktemp(name) / "data", "--handshake-timeout", HANDSHAKE_TIMEOUT, *args)
    account = sign_up_on(suite.channel("gateway"))
    return Target(suite, account.token, account.user.id)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    running = _target(tmp_path_factory, "abuse")
    yield running
    assert running.suite.stop() == 0, running.suite.logs()[-4000:]


# Small enough that one test fills it with a few hundred connections.
CONNECTION_LIMIT = 50


@pytest.fixture(scope="module")
def limited_target(tmp_path_factory):
    running = _target(tmp_path_factory, "abuse-limited", "--max-connections", str(CONNECTION_LIMIT))
    yield running
    assert running.suite.stop() == 0, running.suite.logs()[-4000:]


# --- The attacks ---------------------------------------------------------------------------
# Each takes the target and a port, attacks, asserts what the attacker got and returns it in
# words. They run while MemoryWatch and Bystander watch.


def rapid_reset(target: Target, port: str) -> str:
    """CVE-2023-44487: open streams and reset them at once, 2,000 times in one burst."""
    attacker = RawConnection(target.address(port))
    burst = []
    for _ in range(2000):
        stream_id = attacker.new_stream()
        burst += [
            *attacker.headers_frames(stream_id, attacker.header_block(HEALTH_CHECK)),
            RstStreamFrame(stream_id, 8),
        ]
    attacker.send_quietly(*burst)
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: seen.goaway is not None)
    attacker.close()
    assert seen.goaway == ENHANCE_YOUR_CALM, seen.describe()
    return seen.describe()


def continuation_flood(target: Target, port: str) -> str:
    """CVE-2024-27316 and kin: a header block that never ends, CONTINUATION after CONTINUATION."""
    attacker = RawConnection(target.address(port))
    stream_id = attacker.new_stream()
    attacker.send(HeadersFrame(stream_id, attacker.header_block(HEALTH_CHECK)))
    sent = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        batch = [ContinuationFrame(stream_id, attacker.encoder.encode([("x-junk", "j" * 1000)])) for _ in range(50)]
        if not attacker.send_quietly(*batch):
            break
        sent += len(batch)
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: seen.goaway is not None)
    attacker.close()
    assert seen.goaway == ENHANCE_YOUR_CALM, seen.describe()
    return f"{seen.describe()} after {sent} CONTINUATION frames"


def settings_and_ping_flood(target: Target, port: str) -> str:
    """PING and SETTINGS, each owed an ACK, as fast as possible for a second, reading nothing:
    the server must not queue the ACKs it cannot send."""
    attacker = RawConnection(target.address(port))
    attacker.read(0.2, until=lambda seen: seen.frames["SettingsFrame"] > 0)
    sent = 0
    deadline = time.monotonic() + 1
    batch = [PingFrame(0, opaque_data=b"abuse!!!"), SettingsFrame(0, {SETTINGS_INITIAL_WINDOW_SIZE: 65535})] * 250
    while time.monotonic() < deadline:
        if not attacker.send_quietly(*batch):
            break
        sent += len(batch)
    blocked = time.monotonic() < deadline
    seen = attacker.read(1)
    attacker.close()
    acks = seen.frames["PingFrame"] + seen.frames["SettingsFrame"]
    return (
        f"{sent} frames sent, {'then the server stopped reading' if blocked else 'all read'};"
        f" {acks} ACKs read back in 1 s; {seen.describe()}"
    )


def hpack_bomb(target: Target, port: str) -> str:
    """A 4,000-byte header put into the HPACK table once, then referred to 16,000 times with
    one byte each: a 33 KB header block that decodes to 64 MB."""
    attacker = RawConnection(target.address(port))
    stream_id = attacker.new_stream()
    big = "b" * 4000
    block = attacker.header_block(HEALTH_CHECK, ("x-bomb", big))
    reference = attacker.encoder.encode([("x-bomb", big)])
    assert len(reference) == 1, reference
    attacker.send_quietly(*attacker.headers_frames(stream_id, block + reference * 16_000))
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: seen.goaway is not None)
    attacker.close()
    assert seen.goaway == ENHANCE_YOUR_CALM, seen.describe()
    return seen.describe()


def too_many_streams(target: Target, port: str) -> str:
    """More streams at once than SETTINGS_MAX_CONCURRENT_STREAMS allows: health watches, which
    stay open. The surplus is refused; the rest are served."""
    attacker = RawConnection(target.address(port))
    surplus = 76
    frames = []
    for _ in range(MAX_CONCURRENT_STREAMS + surplus):
        stream_id = attacker.new_stream()
        frames += [
            *attacker.headers_frames(stream_id, attacker.header_block(HEALTH_WATCH)),
            DataFrame(stream_id, grpc_frame(b""), flags=["END_STREAM"]),
        ]
    attacker.send_quietly(*frames)
    seen = attacker.read(
        ANSWER_WAIT_S, until=lambda seen: seen.resets[REFUSED_STREAM] >= surplus and len(seen.headers) >= 1024
    )
    attacker.close()
    assert seen.resets[REFUSED_STREAM] == surplus, seen.describe()
    assert len(seen.headers) == MAX_CONCURRENT_STREAMS, seen.describe()
    return f"{len(seen.headers)} streams answered, {seen.describe()}"


def _size_limit_message(seen: Seen, stream_id: int) -> str:
    status, message = seen.grpc_status(stream_id)
    assert status == RESOURCE_EXHAUSTED, (status, message, seen.describe())
    return message


def message_prefix_of_4_gib(target: Target, port: str) -> str:
    """A gRPC message whose length prefix claims 4 GiB (0xFFFFFFFF), on health and on the
    port's own service with a valid token: refused from the prefix, before any buffer grows."""
    attacker = RawConnection(target.address(port))
    body = grpc_frame(b"\x0a\x01x" * 300, claimed_length=0xFFFF_FFFF)
    health = attacker.unary(HEALTH_CHECK, body)
    service = attacker.unary(SERVICE_METHOD[port], body, ("authorization", f"Bearer {target.token}"))
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: {health, service} <= seen.headers.keys())
    attacker.close()
    health_message = _size_limit_message(seen, health)
    assert f"limit is: {SHELL_MAX_REQUEST_BYTES} bytes" in health_message, health_message
    service_message = _size_limit_message(seen, service)
    assert "4294967295" in service_message, service_message
    return f"RESOURCE_EXHAUSTED on health ({health_message!r}) and on {SERVICE_METHOD[port]} ({service_message!r})"


@functools.cache
def gzip_bomb_message(inflated_bytes: int) -> bytes:
    return grpc_frame(gzip.compress(b"\0" * inflated_bytes, 9), compressed=True)


def gzip_bomb(target: Target, port: str) -> str:
    """gzip-compressed messages that inflate 1,000-fold: 200 health checks of 5 KB that inflate
    to 5 MiB each on one connection, and one call of the port's own service of 32 KB that
    inflates to 32 MiB. Decompression stops at the message limit."""
    attacker = RawConnection(target.address(port))
    small_bomb, big_bomb = gzip_bomb_message(5 << 20), gzip_bomb_message(32 << 20)
    attacker.wait_for_windows()
    gzip_encoding = ("grpc-encoding", "gzip")
    health = [attacker.unary(HEALTH_CHECK, small_bomb, gzip_encoding) for _ in range(200)]
    authorization = ("authorization", f"Bearer {target.token}")
    service = attacker.unary(SERVICE_METHOD[port], big_bomb, gzip_encoding, authorization)
    expected = {*health, service}
    seen = attacker.read(ANSWER_WAIT_S * 2, until=lambda seen: expected <= seen.headers.keys())
    attacker.close()
    health_messages = collections.Counter(_size_limit_message(seen, stream_id) for stream_id in health)
    assert list(health_messages) == [
        f"Error decompressing: size limit, of {SHELL_MAX_REQUEST_BYTES} bytes, exceeded while decompressing message"
    ], health_messages
    service_message = _size_limit_message(seen, service)
    assert "size limit" in service_message, service_message
    return (
        f"{len(health)}×RESOURCE_EXHAUSTED on health ({len(small_bomb)} B each) and on {SERVICE_METHOD[port]}"
        f" ({len(big_bomb)} B: {service_message!r})"
    )


def zero_window_slow_reader(target: Target, port: str) -> str:
    """Two connections with a stream window of 0 (SETTINGS_INITIAL_WINDOW_SIZE), each holding
    300 reflection streams whose answers the server can never send, held for 1.5 s."""
    attackers = [RawConnection(target.address(port), {SETTINGS_INITIAL_WINDOW_SIZE: 0}) for _ in range(2)]
    list_services = grpc_frame(bytes.fromhex("3a00"))  # ServerReflectionRequest{list_services: ""}
    for attacker in attackers:
        frames = []
        for _ in range(300):
            stream_id = attacker.new_stream()
            frames += [
                *attacker.headers_frames(stream_id, attacker.header_block(REFLECTION)),
                DataFrame(stream_id, list_services),
            ]
        attacker.send_quietly(*frames)
    deadline = time.monotonic() + 1.5
    for attacker in attackers:
        attacker.read(max(0.0, deadline - time.monotonic()), until=lambda seen: len(seen.headers) >= 300)
    time.sleep(max(0.0, deadline - time.monotonic()))
    answered = sum(len(attacker.seen.headers) for attacker in attackers)
    data = sum(attacker.seen.frames["DataFrame"] for attacker in attackers)
    for attacker in attackers:
        attacker.close()
    assert data == 0, "a DATA frame went past a zero window"
    assert answered == 600, answered
    return f"{answered} streams held open with response headers and no DATA (window 0)"


def idle_connections(target: Target, port: str) -> str:
    """200 connections that send the preface and SETTINGS, then nothing, held for a second:
    under --max-connections (4,096) they are kept, at a bounded cost each."""
    attackers = [RawConnection(target.address(port)) for _ in range(200)]
    time.sleep(1)
    closed = 0
    for attacker in attackers:
        closed += attacker.read(0.01).closed
        attacker.close()
    assert closed == 0, f"{closed} idle connections under the limit were closed"
    return f"{len(attackers)} idle HTTP/2 connections held open"


def connections_without_preface(target: Target, port: str) -> str:
    """200 connections that never send the HTTP/2 preface (half of them start an HTTP/1 request
    and stop): each is closed after --handshake-timeout (500 ms here)."""
    started = time.monotonic()
    attackers = [RawConnection(target.address(port), preface=False) for _ in range(200)]
    for attacker in attackers[::2]:
        attacker.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    open_after = [attacker for attacker in attackers if not attacker.read(ANSWER_WAIT_S).closed]
    waited = time.monotonic() - started
    for attacker in attackers:
        attacker.close()
    assert not open_after, f"{len(open_after)} of {len(attackers)} still open after {ANSWER_WAIT_S} s"
    return f"all {len(attackers)} closed by the server within {waited:.1f} s of the first connecting"


def oversized_metadata(target: Target, port: str) -> str:
    """28 KB of request metadata (over the 16 KiB header list the server announces), in a
    HEADERS and a CONTINUATION: that call is refused with 431 and its stream reset; the same
    connection then serves an ordinary call."""
    attacker = RawConnection(target.address(port))
    oversized = attacker.unary(HEALTH_CHECK, grpc_frame(b""), ("x-big-1", "a" * 14_000), ("x-big-2", "b" * 14_000))
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: seen.resets)
    ordinary = attacker.unary(HEALTH_CHECK, grpc_frame(b""))
    seen = attacker.read(ANSWER_WAIT_S, until=lambda seen: "grpc-status" in seen.headers.get(ordinary, {}))
    attacker.close()
    assert seen.headers.get(oversized, {}).get(":status") == "431", seen.headers.get(oversized)
    assert seen.resets, seen.describe()
    assert seen.goaway is None, seen.describe()
    assert seen.grpc_status(ordinary)[0] == "0", seen.headers.get(ordinary)
    return f"431 and {seen.describe()}; the next call on that connection served (grpc-status 0)"


ATTACKS = [
    rapid_reset,
    continuation_flood,
    settings_and_ping_flood,
    hpack_bomb,
    too_many_streams,
    message_prefix_of_4_gib,
    gzip_bomb,
    zero_window_slow_reader,
    idle_connections,
    connections_without_preface,
    oversized_metadata,
]


def run_case(target: Target, port: str, attack, record_property) -> None:
    process = target.suite.process
    with Bystander(target.address(port)) as bystander, MemoryWatch(process.pid) as memory:
        attacker_got = attack(target, port)
    assert process.poll() is None, f"notesuite died ({process.returncode}):\n{target.suite.logs()[-4000:]}"
    target.real_call(port)
    line = f"{attack.__name__} on {port}: {attacker_got}; {memory}; {bystander}; a {port} call served after"
    record_property("protocol_abuse", line)
    assert not bystander.failures, line
    assert bystander.served >= 2, line
    assert memory.peak - memory.before < MEMORY_BOUND_KIB, line


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.__name__)
def test_protocol_abuse_leaves_the_process_alive_bounded_and_serving(target, port, attack, record_property):
    run_case(target, port, attack, record_property)


def connection_flood(target: Target, port: str) -> str:
    """200 idle HTTP/2 connections against --max-connections 50 (per port): the surplus is
    closed as soon as it is accepted, so the process holds at most the limit. A client already
    connected is served; a new one waits until a place frees (no idle timeout frees one)."""
    attackers = [RawConnection(target.address(port)) for _ in range(200)]
    for attacker in attackers:
        attacker.read(0.5, until=lambda seen: seen.frames["SettingsFrame"] > 0)
    open_ones = [attacker for attacker in attackers if not attacker.seen.closed]
    # The bystander, the test's other channels and the gateway's own connections to the
    # services hold a few places.
    assert CONNECTION_LIMIT - 10 <= len(open_ones) < CONNECTION_LIMIT, len(open_ones)
    # Not asserted, reported: while the flood holds every place, a client that connects now
    # is turned away (the limit is per port, not per peer, and idle connections are kept).
    # A subchannel pool of its own: grpcio would otherwise reuse the bystander's connection.
    with grpc.insecure_channel(target.address(port), options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            newcomer = "served"
        except grpc.RpcError as error:
            newcomer = f"refused ({error.code().name})"
    for attacker in attackers:
        attacker.close()
    closed = len(attackers) - len(open_ones)
    return f"{closed} of {len(attackers)} closed at once, {len(open_ones)} held; a new client meanwhile: {newcomer}"


def test_a_connection_flood_is_cut_at_max_connections(limited_target, record_property):
    for port in PORTS:
        run_case(limited_target, port, connection_flood, record_property)
