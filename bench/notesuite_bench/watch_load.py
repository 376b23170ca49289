"""A load generator that holds many server-streaming calls open over a few HTTP/2 connections
and timestamps, on every one of them, the arrival of one message: the streaming scenario's
WatchNotes (and Health/Watch) client.

`WatchLoad` is the harness's side: it starts this module as a separate process pinned to the
load core (`python -m notesuite_bench.watch_load`) and drives it one command at a time, a JSON
line on its stdin answered by a JSON line on its stdout, so that the streams stay open while
the harness reads the server's memory between steps:

- connect: open `connections` HTTP/2 connections to the server (preface and SETTINGS both ways);
- open: open `streams` more calls, spread evenly over the connections (never more than the
  server's SETTINGS_MAX_CONCURRENT_STREAMS on one), at most `window` of them waiting for their
  first message at once, and wait until each has received its first message;
- write: make one unary call (on a connection of its own, to any address: another replica) and
  wait until every open stream has received a message starting with `expect`; answer with the
  delay from just before the call was sent to each stream's arrival, in µs;
- close: close everything and exit.

Raw HTTP/2 on purpose, like h2probe.py: with 10,000 streams, a gRPC client's own work per
received message would be most of the delivery latency measured (grpc.aio, measured here: ~33 µs
of CPU per WatchNotes event, a third of a second for 10,000 on one core). Here frames are cut by
hand from socket reads (a 9-byte frame header, gRPC's 5-byte message prefix; ~1.5 µs per
message), nothing is decoded but the first bytes of each message and the header blocks (with
hpack, whose dynamic table must follow every block the server sends), and every message is
stamped with the kernel's receive timestamp of the read that holds it (SO_TIMESTAMPNS: when
its bytes reached the socket, not when this client got round to them). Requests' header blocks
use literal fields without indexing, so one encoded block serves every stream.
"""

from __future__ import annotations

import base64
import fcntl
import json
import select
import selectors
import socket
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from .processes import LOAD_CORE, clean_environment

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 0x2, 0x3
FRAME_HEADER = struct.Struct(">BHBBI")
# A frame header and, when it is a DATA frame, the gRPC message prefix that starts it.
FRAME_AND_PREFIX = struct.Struct(">BHBBIBI")
# The receive windows this client offers: the default 64 KiB per stream (as gRPC clients
# start with), and a connection window large enough for one message on every stream of a
# connection at once; both are topped up once half is used.
STREAM_WINDOW = 65_535
CONNECTION_WINDOW = 16 * 1024 * 1024
# Small reads: every message of one read is stamped with the arrival of its newest bytes.
READ_SIZE = 64 * 1024
# The receive buffer asked for each connection (the kernel caps it at net.core.rmem_max): room
# for a burst of messages on all its streams while this client reads another connection, so
# that the server is not held back by TCP's flow control when this client falls behind.
RECEIVE_BUFFER = 4 * 1024 * 1024
# Linux: SO_TIMESTAMPNS (SO_TIMESTAMPNS_OLD on 64-bit), also the control message's type. The
# kernel stamps each arriving packet (CLOCK_REALTIME); a TCP read returns the newest stamp of the
# bytes it read, so a message is timed when it reached the socket, not when this client, busy
# with earlier messages, got round to it.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")
CONTROL_SIZE = socket.CMSG_SPACE(TIMESPEC.size)
COMMAND_TIMEOUT_MARGIN_S = 60


# --- HTTP/2 and gRPC framing (pure functions, unit-tested) ------------------------------------


def hpack_integer(value: int, prefix_bits: int, first_byte: int = 0) -> bytes:
    """RFC 7541 §5.1: `value` with an N-bit prefix, the prefix's other bits from `first_byte`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    encoded = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        encoded.append((value & 0x7F) | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def encode_header_block(headers: list[tuple[str, str]]) -> bytes:
    """A header block of literal fields without indexing, new names, no Huffman coding
    (RFC 7541 §6.2.2): it leaves the server's dynamic table alone, so the same bytes can open
    any number of streams on any connection."""
    block = bytearray()
    for name, value in headers:
        name_bytes, value_bytes = name.encode(), value.encode()
        block += b"\x00" + hpack_integer(len(name_bytes), 7) + name_bytes
        block += hpack_integer(len(value_bytes), 7) + value_bytes
    return bytes(block)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return FRAME_HEADER.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def grpc_message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message, not compressed."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def split_frames(buffer: bytes) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The whole frames at the start of `buffer` as (type, flags, stream id, payload), and
    where the first incomplete frame begins."""
    frames = []
    position = 0
    end = len(buffer)
    while end - position >= 9:
        high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(buffer, position)
        length = (high << 16) | low
        if end - position - 9 < length:
            break
        frames.append((kind, flags, stream_id & 0x7FFFFFFF, buffer[position + 9 : position + 9 + length]))
        position += 9 + length
    return frames, position


def unpadded(flags: int, payload: bytes, kind: int) -> bytes:
    """A DATA or HEADERS payload without its padding (and a HEADERS' priority fields)."""
    start, end = 0, len(payload)
    if flags & PADDED:
        start, end = 1, end - payload[0]
    if kind == HEADERS and flags & PRIORITY:
        start += 5
    return payload[start:end]


def split_messages(pending: bytes) -> tuple[list[bytes], bytes]:
    """The whole gRPC messages in `pending` (their payloads) and what is left of the next one."""
    messages = []
    position = 0
    while len(pending) - position >= 5:
        length = struct.unpack_from(">I", pending, position + 1)[0]
        if len(pending) - position - 5 < length:
            break
        messages.append(pending[position + 5 : position + 5 + length])
        position += 5 + length
    return messages, pending[position:]


def settings_values(payload: bytes) -> dict[int, int]:
    return {key: value for key, value in struct.iter_unpack(">HI", payload)}


# --- The client process -----------------------------------------------------------------------


@dataclass(slots=True)
class Stream:
    stream_id: int
    pending: bytes = b""
    headers_seen: bool = False
    opened_ns: int = 0
    first_ns: int = 0
    # gRPC status from the trailers, or "RST n" / "GOAWAY" when the stream ended otherwise.
    ended: str | None = None
    # The write being waited for: when it arrived, and the first bytes of what did.
    hit_ns: int = 0
    unary: bool = False
    unacknowledged: int = 0


@dataclass(slots=True)
class Connection:
    sock: socket.socket
    decoder: object
    authority: str
    next_stream_id: int = 1
    max_streams: int = 2**31
    settings_received: bool = False
    settings_acknowledged: bool = False
    streams: dict[int, Stream] = field(default_factory=dict)
    buffer: bytes = b""
    block: bytearray = field(default_factory=bytearray)
    block_flags: int = 0
    block_stream: int = 0
    unacknowledged: int = 0
    outgoing: bytearray = field(default_factory=bytearray)
    goaway: bool = False
    # Streams of this connection not ended (unary calls included).
    open_streams: int = 0


class Client:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.watchers: list[Connection] = []
        self.writers: dict[str, Connection] = {}
        self.streams: list[tuple[Connection, Stream]] = []
        # The prefix the current write waits for on every stream, on how many, how many still
        # wait, and the client's CPU time when the first got it.
        self.expect: bytes | None = None
        self.expected = 0
        self.waiting = 0
        self.first_hit_cpu_s = 0.0
        # Reads stamped by the kernel, and by this process's clock (no timestamp came with them).
        self.kernel_stamps = 0
        self.clock_stamps = 0
        # The most bytes seen waiting in one socket when it was read: how far behind the client
        # fell (a read that fills READ_SIZE asks the kernel what is left).
        self.max_backlog = 0
        self.first_waiting = 0

    # Connections.

    def _connect(self, address: str) -> Connection:
        import hpack  # here: the harness process itself needs no hpack

        host, port = address.rsplit(":", 1)
        family, kind, protocol, _name, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, protocol)
        # Before connecting, so that the window offered from the start is this large.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.settimeout(30)
        sock.connect(where)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.settimeout(None)
        connection = Connection(sock, hpack.Decoder(), address)
        connection.decoder.max_allowed_table_size = 1 << 20
        settings = struct.pack(">HI", SETTINGS_ENABLE_PUSH, 0)
        connection.outgoing += PREFACE + frame(SETTINGS, 0, 0, settings)
        connection.outgoing += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", CONNECTION_WINDOW - 65_535))
        self._flush(connection)
        self.selector.register(sock, selectors.EVENT_READ, connection)
        return connection

    def connect(self, address: str, connections: int, timeout_s: float) -> dict:
        made = [self._connect(address) for _ in range(connections)]
        self.watchers += made
        self._loop(lambda: all(c.settings_received and c.settings_acknowledged for c in made), timeout_s)
        return {"connections": len(self.watchers), "max_streams": min(c.max_streams for c in made)}

    # Streams.

    def _start(self, connection: Connection, block: bytes, body: bytes, unary: bool) -> Stream:
        stream = Stream(connection.next_stream_id, unary=unary, opened_ns=time.time_ns())
        connection.next_stream_id += 2
        connection.streams[stream.stream_id] = stream
        connection.open_streams += 1
        connection.outgoing += frame(HEADERS, END_HEADERS, stream.stream_id, block)
        connection.outgoing += frame(DATA, END_STREAM, stream.stream_id, body)
        return stream

    def open(self, path: str, headers: list, body: bytes, streams: int, window: int, timeout_s: float) -> dict:
        cpu_before, began = _own_cpu_s(), time.monotonic()
        first_new = len(self.streams)
        blocks = {
            id(connection): encode_header_block(_request_headers(connection.authority, path, headers))
            for connection in self.watchers
        }
        body = grpc_message(body)
        to_open = streams
        while to_open > 0 or self.first_waiting > 0:
            # Keep at most `window` streams waiting for their first message.
            batch = min(to_open, window - self.first_waiting)
            touched = set()
            for _ in range(max(batch, 0)):
                connection = min(self.watchers, key=lambda c: c.open_streams)
                if connection.open_streams >= connection.max_streams or connection.goaway:
                    raise RuntimeError(
                        f"no connection may open another stream ({connection.open_streams} open, "
                        f"the server allows {connection.max_streams} per connection)"
                    )
                stream = self._start(connection, blocks[id(connection)], body, unary=False)
                self.streams.append((connection, stream))
                self.first_waiting += 1
                touched.add(id(connection))
                to_open -= 1
            for connection in self.watchers:
                if id(connection) in touched:
                    self._flush(connection)
            if time.monotonic() - began > timeout_s:
                break
            room = window if to_open > 0 else 1
            self._loop(lambda room=room: self.first_waiting < room, 1.0)
        new = [stream for _, stream in self.streams[first_new:]]
        ended = [stream.ended for stream in new if stream.ended is not None]
        return {
            "opened": sum(1 for stream in new if stream.first_ns and stream.ended is None),
            "requested": streams,
            "ended": _counts(ended),
            "no_first_message": sum(1 for stream in new if not stream.first_ns and stream.ended is None),
            "seconds": time.monotonic() - began,
            "load_cpu_s": _own_cpu_s() - cpu_before,
            "open_total": sum(1 for _, stream in self.streams if stream.ended is None),
        }

    def write(self, address: str, path: str, headers: list, body: bytes, expect: bytes, timeout_s: float) -> dict:
        connection = self.writers.get(address)
        if connection is None:
            connection = self._connect(address)
            self.writers[address] = connection
            self._loop(lambda: connection.settings_received and connection.settings_acknowledged, timeout_s)
        live = [stream for _, stream in self.streams if stream.ended is None]
        for stream in live:
            stream.hit_ns = 0
        self.expect = expect
        self.expected = self.waiting = len(live)
        self.first_hit_cpu_s = 0.0
        self.kernel_stamps = self.clock_stamps = self.max_backlog = 0
        block = encode_header_block(_request_headers(connection.authority, path, headers))
        cpu_before = _own_cpu_s()
        call = self._start(connection, block, grpc_message(body), unary=True)
        sent_ns = call.opened_ns = time.time_ns()
        self._flush(connection)
        self._loop(lambda: self.waiting == 0 and call.ended is not None, timeout_s)
        cpu_after = _own_cpu_s()
        self.expect = None
        arrived = [stream.hit_ns for stream in live if stream.hit_ns]
        last_ns = max(arrived, default=time.time_ns())
        first_ns = min(arrived, default=last_ns)
        return {
            "streams": len(live),
            "latencies_us": sorted((hit - sent_ns) // 1000 for hit in arrived),
            "missing": len(live) - len(arrived),
            "ended": _counts([stream.ended for stream in live if stream.ended is not None]),
            "call_status": call.ended,
            "call_us": (call.first_ns - sent_ns) // 1000 if call.first_ns else None,
            "window_s": (last_ns - sent_ns) / 1e9,
            "load_cpu_s": cpu_after - cpu_before,
            # From the first stream's arrival to the last: the part of the window in which the
            # client had messages to read, and its CPU time in it.
            "spread_s": (last_ns - first_ns) / 1e9,
            "spread_cpu_s": cpu_after - self.first_hit_cpu_s if self.first_hit_cpu_s else 0.0,
            "kernel_stamps": self.kernel_stamps,
            "clock_stamps": self.clock_stamps,
            "max_backlog_bytes": self.max_backlog,
            "receive_buffer_bytes": min(
                (c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for c in self.watchers), default=0
            ),
        }

    def close(self) -> dict:
        for connection in [*self.watchers, *self.writers.values()]:
            self.selector.unregister(connection.sock)
            connection.sock.close()
        return {"closed": len(self.streams)}

    # The event loop.

    def _loop(self, done, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in self.selector.select(min(remaining, 0.5)):
                self._receive(key.data)

    def _receive(self, connection: Connection) -> None:
        try:
            data, control, _flags, _address = connection.sock.recvmsg(READ_SIZE, CONTROL_SIZE)
        except OSError as error:
            self._lost(connection, f"connection lost: {error}")
            return
        now = 0
        for level, kind, value in control:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
                seconds, nanoseconds = TIMESPEC.unpack_from(value)
                now = seconds * 1_000_000_000 + nanoseconds
        if now:
            self.kernel_stamps += 1
        else:
            now = time.time_ns()
            self.clock_stamps += 1
        if len(data) == READ_SIZE:
            waiting = fcntl.ioctl(connection.sock, termios.FIONREAD, b"\0\0\0\0")
            self.max_backlog = max(self.max_backlog, READ_SIZE + struct.unpack("i", waiting)[0])
        if not data:
            self._lost(connection, "connection closed")
            return
        if connection.buffer:
            data = connection.buffer + data
        # The hot path: DATA frames each holding one whole message, cut and classified in place
        # (no copy, no call per frame); anything else goes the general way.
        unpack, unpack_both, end, position = FRAME_HEADER.unpack_from, FRAME_AND_PREFIX.unpack_from, len(data), 0
        streams, expect = connection.streams, self.expect
        while end - position >= 9:
            if end - position >= 14:
                high, low, kind, flags, stream_id, _compressed, message_length = unpack_both(data, position)
            else:
                high, low, kind, flags, stream_id = unpack(data, position)
                message_length = -1
            length = (high << 16) | low
            start = position + 9
            if end - start < length:
                break
            position = start + length
            if kind != DATA:
                self._control(connection, kind, flags, stream_id & 0x7FFFFFFF, data[start:position], now)
                continue
            connection.unacknowledged += length
            stream = streams.get(stream_id & 0x7FFFFFFF)
            if stream is None:
                continue
            stream.unacknowledged += length
            if stream.unacknowledged > STREAM_WINDOW // 2 and not flags & END_STREAM:
                connection.outgoing += frame(
                    WINDOW_UPDATE, 0, stream.stream_id, struct.pack(">I", stream.unacknowledged)
                )
                stream.unacknowledged = 0
            if stream.first_ns and not stream.pending and not flags & PADDED and message_length == length - 5:
                if (
                    expect is not None
                    and not stream.hit_ns
                    and length - 5 >= len(expect)
                    and data.startswith(expect, start + 5)
                ):
                    stream.hit_ns = now
                    self._hit()
                continue
            self._messages(stream, unpadded(flags, data[start:position], DATA), now)
        connection.buffer = data[position:]
        if connection.unacknowledged > CONNECTION_WINDOW // 2:
            connection.outgoing += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", connection.unacknowledged))
            connection.unacknowledged = 0
        self._flush(connection)

    def _control(self, connection: Connection, kind: int, flags: int, stream_id: int, payload: bytes, now: int) -> None:
        if kind in (HEADERS, CONTINUATION):
            self._headers(connection, kind, flags, stream_id, payload, now)
        elif kind == SETTINGS:
            if flags & ACK:
                connection.settings_acknowledged = True
            else:
                values = settings_values(payload)
                connection.max_streams = values.get(SETTINGS_MAX_CONCURRENT_STREAMS, connection.max_streams)
                connection.settings_received = True
                connection.outgoing += frame(SETTINGS, ACK, 0)
        elif kind == PING and not flags & ACK:
            connection.outgoing += frame(PING, ACK, 0, payload)
        elif kind == RST_STREAM:
            self._end(connection, stream_id, f"RST {struct.unpack('>I', payload)[0]}")
        elif kind == GOAWAY:
            connection.goaway = True

    def _messages(self, stream: Stream, payload: bytes, now: int) -> None:
        """The general way: messages split across frames, several in one, padding."""
        messages, stream.pending = split_messages(stream.pending + payload)
        for message in messages:
            if not stream.first_ns:
                stream.first_ns = now
                if not stream.unary:
                    self.first_waiting -= 1
            elif self.expect is not None and not stream.hit_ns and message.startswith(self.expect):
                stream.hit_ns = now
                self._hit()

    def _hit(self) -> None:
        """One more stream got the write: the CPU time at the first says where the client's
        own share of the delivery window begins."""
        if self.waiting == self.expected:
            self.first_hit_cpu_s = _own_cpu_s()
        self.waiting -= 1

    def _headers(self, connection: Connection, kind: int, flags: int, stream_id: int, payload: bytes, now: int) -> None:
        if kind == HEADERS:
            connection.block = bytearray(unpadded(flags, payload, HEADERS))
            connection.block_flags = flags
            connection.block_stream = stream_id
        else:
            connection.block += payload
        if not flags & END_HEADERS:
            return
        decoded = connection.decoder.decode(bytes(connection.block))
        stream = connection.streams.get(connection.block_stream)
        if stream is None:
            return
        stream.headers_seen = True
        if connection.block_flags & END_STREAM:
            status = next((value for name, value in decoded if name == "grpc-status"), "no grpc-status")
            if stream.unary and not stream.first_ns:
                stream.first_ns = now
            self._end(connection, stream.stream_id, str(status))

    def _end(self, connection: Connection, stream_id: int, status: str) -> None:
        stream = connection.streams.get(stream_id)
        if stream is None or stream.ended is not None:
            return
        stream.ended = status
        connection.open_streams -= 1
        if stream.unary:
            return
        if not stream.first_ns:
            self.first_waiting -= 1
        if self.expect is not None and not stream.hit_ns:
            self.waiting -= 1

    def _lost(self, connection: Connection, why: str) -> None:
        self.selector.unregister(connection.sock)
        for stream_id in list(connection.streams):
            self._end(connection, stream_id, why)

    def _flush(self, connection: Connection) -> None:
        if connection.outgoing:
            connection.sock.sendall(connection.outgoing)
            connection.outgoing.clear()


def _request_headers(authority: str, path: str, headers: list) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *((name, value) for name, value in headers),
    ]


def _counts(values: list[str]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for value in values:
        counted[value] = counted.get(value, 0) + 1
    return counted


def _own_cpu_s() -> float:
    # Nanosecond resolution (os.times counts 10 ms ticks): a fan-out lasts tens of ms.
    return time.process_time()


def serve(lines, out) -> None:
    """Answers each command line of `lines` with one JSON line on `out`."""
    client = Client()
    for line in lines:
        command = json.loads(line)
        kind = command.pop("command")
        try:
            if kind == "connect":
                answer = client.connect(**command)
            elif kind == "open":
                command["body"] = base64.b64decode(command["body"])
                answer = client.open(**command)
            elif kind == "write":
                command["body"] = base64.b64decode(command["body"])
                command["expect"] = base64.b64decode(command["expect"])
                answer = client.write(**command)
            elif kind == "close":
                out.write(json.dumps(client.close()) + "\n")
                out.flush()
                return
            else:
                answer = {"error": f"unknown command {kind!r}"}
        except Exception as error:  # noqa: BLE001 (said to the harness, which raises it)
            answer = {"error": repr(error)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# --- The harness's side -----------------------------------------------------------------------


class WatchLoad:
    """The client process: started pinned to the load core, stopped by close() (also when the
    harness goes: it reads its stdin until it ends)."""

    def __init__(self, log_file: Path):
        self.log = log_file.open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(LOAD_CORE), sys.executable, "-m", "notesuite_bench.watch_load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env=clean_environment(),
        )

    def _ask(self, command: dict, timeout_s: float) -> dict:
        if self.process.poll() is not None:
            raise RuntimeError(f"the watch client exited {self.process.returncode}")
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        # The client bounds each command by its own timeout; a dead client ends the line.
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s + COMMAND_TIMEOUT_MARGIN_S)
        if not ready:
            self.process.kill()
            raise RuntimeError(f"the watch client did not answer {command['command']} within {timeout_s:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the watch client exited {self.process.wait(timeout=10)} during {command['command']}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the watch client failed during {command['command']}: {answer['error']}")
        return answer

    def connect(self, address: str, connections: int, timeout_s: float = 30) -> dict:
        command = {"command": "connect", "address": address, "connections": connections, "timeout_s": timeout_s}
        return self._ask(command, timeout_s)

    def open(
        self, path: str, headers: tuple, body: bytes, streams: int, window: int = 256, timeout_s: float = 120
    ) -> dict:
        command = {
            "command": "open",
            "path": path,
            "headers": [list(pair) for pair in headers],
            "body": base64.b64encode(body).decode(),
            "streams": streams,
            "window": window,
            "timeout_s": timeout_s,
        }
        return self._ask(command, timeout_s)

    def write(self, address: str, path: str, headers: tuple, body: bytes, expect: bytes, timeout_s: float = 30) -> dict:
        command = {
            "command": "write",
            "address": address,
            "path": path,
            "headers": [list(pair) for pair in headers],
            "body": base64.b64encode(body).decode(),
            "expect": base64.b64encode(expect).decode(),
            "timeout_s": timeout_s,
        }
        return self._ask(command, timeout_s)

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.stdin.write(json.dumps({"command": "close"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def main() -> int:
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
