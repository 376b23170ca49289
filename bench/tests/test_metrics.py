"""Waiting for a server to be quiet when it is too busy to answer a scrape at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from notesuite_bench import metrics

METHOD = metrics.Method("notesuite.notes.v1.NotesService", "GetNote")
BODY = b'rpc_server_active_calls{rpc_service="notesuite.notes.v1.NotesService",rpc_method="GetNote"} 0\n'


@contextmanager
def metrics_server(silent_first: int) -> Iterator[str]:
    """A /metrics endpoint that reads its first `silent_first` requests and never answers them
    (as a server busy with abandoned calls), then answers every later one."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(4096)
            if len(held) < silent_first:
                held.append(connection)
                continue
            header = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
            connection.sendall(header.encode() + BODY)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_a_scrape_that_times_out_is_tried_again_until_the_deadline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics, "SCRAPE_TIMEOUT_S", 0.2)
    with metrics_server(silent_first=2) as address:
        quiet = metrics.wait_until_quiet(address, METHOD, timeout_s=10)
    assert quiet.active_calls(METHOD) == 0


def test_a_server_that_answers_no_scrape_before_the_deadline_fails(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics, "SCRAPE_TIMEOUT_S", 0.2)
    with metrics_server(silent_first=1_000) as address, pytest.raises(TimeoutError):
        metrics.wait_until_quiet(address, METHOD, timeout_s=1)
