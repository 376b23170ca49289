"""The database as operators meet it: replicas starting together on an empty PostgreSQL
database, and a disk that fills up under SQLite (a write fault injected with LD_PRELOAD)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from notesuite.notes.v1 import notes_pb2, notes_pb2_grpc

import conftest
from conftest import (
    BACKEND,
    CALL_TIMEOUT_S,
    NOTESUITE_BIN,
    POSTGRES_SERVER,
    SHUTDOWN_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    error_details,
    run,
    sign_up_on,
    wait_until_serving,
)

NOTES_MIGRATIONS = sorted((conftest.REPO_ROOT / "crates/notes/migrations/postgres").glob("*.sql"))


def psql(database_url: str, sql: str) -> str:
    done = subprocess.run(["psql", database_url, "-Atqc", sql], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def serving_address(process: subprocess.Popen, lines: queue.Queue) -> str:
    """The address from the process's "serving" log line: written after the port is bound."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no 'serving' log line within {STARTUP_TIMEOUT_S}s") from None
        if line is None:
            raise AssertionError(f"the process exited ({process.wait()}) before serving")
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("message") == "serving":
            return event["address"]


def start_notes(database_url: str, public_key: Path) -> tuple[subprocess.Popen, queue.Queue]:
    process = subprocess.Popen(
        [
            str(NOTESUITE_BIN),
            "notes",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--database-url",
            database_url,
            "--jwt-public-key",
            str(public_key),
            "--drain-delay",
            "0s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTESUITE_LOG_FORMAT": "json"},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


@pytest.mark.skipif(BACKEND != "postgres", reason="runs in the PostgreSQL pass of the test command")
def test_four_replicas_starting_at_once_on_an_empty_database_all_serve_and_migrate_once(tmp_path):
    keygen = run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    name = f"notesuite_ext_replicas_{uuid.uuid4().hex[:12]}"
    psql(POSTGRES_SERVER, f"CREATE DATABASE {name}")
    database_url = f"{POSTGRES_SERVER.rsplit('/', 1)[0]}/{name}"
    replicas = []
    try:
        # Started back to back, before any of them has had time to migrate.
        replicas = [start_notes(database_url, tmp_path / "jwt-public.pem") for _ in range(4)]
        addresses = [serving_address(process, lines) for process, lines in replicas]
        for address in addresses:
            wait_until_serving(address, "notesuite.notes.v1.NotesService")
        applied = psql(database_url, "SELECT version, success FROM _sqlx_migrations ORDER BY version")
        assert applied.splitlines() == [f"{path.name.split('_')[0].lstrip('0')}|t" for path in NOTES_MIGRATIONS]
        for process, _ in replicas:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0
    finally:
        for process, _ in replicas:
            if process.poll() is None:
                process.kill()
                process.wait()
        psql(POSTGRES_SERVER, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


FAULT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Fails writes to files whose path contains $NOTESUITE_FAULT_MATCH with ENOSPC ("disk full")
   while the file $NOTESUITE_FAULT_FLAG exists. */
static int faulty(int fd) {
    const char *flag = getenv("NOTESUITE_FAULT_FLAG");
    const char *match = getenv("NOTESUITE_FAULT_MATCH");
    if (!flag || !match || access(flag, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strstr(path, match) != NULL;
}

#define FAIL_IF_FAULTY(fd) do { if (faulty(fd)) { errno = ENOSPC; return -1; } } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "write");
    FAIL_IF_FAULTY(fd);
    return real(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite");
    FAIL_IF_FAULTY(fd);
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite64");
    FAIL_IF_FAULTY(fd);
    return real(fd, buf, count, offset);
}
"""


def build_fault_shim(directory: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the disk-full test builds an LD_PRELOAD shim: it needs a C compiler (cc or gcc)"
    source = directory / "fault.c"
    source.write_text(FAULT_SHIM)
    library = directory / "libfault.so"
    built = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return library


def readiness(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S).status


def wait_for_readiness(address: str, status: int, bound_s: float = 20) -> float:
    """Seconds until readiness reports `status` (health Watch: no polling)."""
    started = time.monotonic()
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for answer in health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=bound_s):
            if answer.status == status:
                return time.monotonic() - started
    raise AssertionError(f"{address}: readiness never became {status}")


@pytest.mark.skipif(BACKEND != "sqlite", reason="a full disk under SQLite; PostgreSQL's disk is its server's")
def test_a_full_disk_answers_unavailable_flips_readiness_and_heals_without_a_restart(start, tmp_path):
    shim = build_fault_shim(tmp_path)
    flag = tmp_path / "disk-is-full"
    suite = start(
        tmp_path / "data",
        env={
            "LD_PRELOAD": str(shim),
            "NOTESUITE_FAULT_FLAG": str(flag),
            "NOTESUITE_FAULT_MATCH": "notes.db",
        },
    )
    account = sign_up_on(suite.channel("gateway"))
    notes = notes_pb2_grpc.NotesServiceStub(suite.channel("gateway"))

    def create(title: str) -> notes_pb2.Note:
        request = notes_pb2.CreateNoteRequest(note=notes_pb2.Note(title=title, content="x" * 8192))
        return notes.CreateNote(request, metadata=account.metadata, timeout=CALL_TIMEOUT_S).note

    before = create("before the disk filled up")

    flag.touch()
    # Several failed writes in a row, each a failed transaction the store must clean up.
    for attempt in range(12):
        with pytest.raises(grpc.RpcError) as failed:
            create(f"while the disk is full {attempt}")
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
        details = error_details(failed.value)
        assert details.reason == "DATABASE_UNAVAILABLE"
        assert details.retry_delay is not None, "says when to retry"
    flipped = wait_for_readiness(suite.notes, health_pb2.HealthCheckResponse.NOT_SERVING)
    print(f"disk full: readiness NOT_SERVING within {flipped:.2f}s")
    # A read may need to write too (a new connection maps the WAL index): it works or is
    # UNAVAILABLE like the writes, never INTERNAL.
    try:
        got = notes.GetNote(notes_pb2.GetNoteRequest(id=before.id), metadata=account.metadata, timeout=CALL_TIMEOUT_S)
        assert got.note == before
    except grpc.RpcError as failed:
        assert failed.code() == grpc.StatusCode.UNAVAILABLE, failed.details()

    flag.unlink()
    healed = wait_for_readiness(suite.notes, health_pb2.HealthCheckResponse.SERVING)
    print(f"disk freed: readiness SERVING within {healed:.2f}s")
    # No connection was left poisoned: every write works again, with no restart.
    created = [create(f"after {attempt}") for attempt in range(12)]
    listed = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=100), metadata=account.metadata)
    assert {note.id for note in listed.notes} == {before.id, *(note.id for note in created)}, "no write half-done"
    assert readiness(suite.notes) == health_pb2.HealthCheckResponse.SERVING
