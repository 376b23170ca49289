"""ImportNotes against the database's own bulk insert of the same rows (SPEC §11: ≥ 0.8×).

- ImportNotes: one client-streaming call straight to notes, every item pre-serialised (a
  title, 1 KiB of content, two tags and a fresh request_id each, as a careful client sends),
  sent by grpcio in the harness process (pinned to the load core); the rate is notes created
  per second of the call, from its first byte to the summary.
- The database's own bulk insert of the same notes, into the `notes` table of a fresh copy of
  the notes schema (made by the service's own migrations), with the columns the store writes
  (a time-ordered id, the owner, title, content, tags, revision, create and update time):
  - SQLite: Python's sqlite3 (the C library, in the harness process), with the store's
    settings (WAL, synchronous=NORMAL), `executemany` of IMPORT_BATCH rows per transaction:
    the import's own batch size;
  - PostgreSQL, through psql: multi-row INSERTs of IMPORT_BATCH rows, each its own
    transaction (as the import's batches), and one COPY of every row (the database's fastest
    way in). Timed by psql's `\\timing` (the statements only, not psql's start-up).
  Only the note rows: the import also writes two tag rows, a change-log row and an idempotency
  record per note, and bumps the owner's revision; that is its own work, as the budget counts it.
- To tell that work from the rest, the same bulk inserts again with every row the import
  writes (`everything`): per batch, in one transaction, the owner's revision once, then the
  notes, their tag rows, their change-log rows and their request records, each table in one
  statement. Not the import's per-note lookups (an earlier request_id) and log pruning.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# The import's batch: crates/notes/src/grpc.rs IMPORT_BATCH.
IMPORT_BATCH = 256
CALL_TIMEOUT_S = 600
TIMING = re.compile(r"^Time: ([\d.]+) ms", re.MULTILINE)
# The harness's own core busier than this during an import: the rate may be the client's.
SATURATED_LOAD_CORE = 0.9


@dataclass(frozen=True)
class Row:
    """One note as the store writes it."""

    id: str
    title: str
    content: str
    tags: tuple[str, ...]
    revision: int
    time_us: int
    request_id: str

    @property
    def fingerprint(self) -> bytes:
        """32 bytes, as the store's SHA-256 of the request."""
        return hashlib.sha256(f"{self.title}\n{self.content}".encode()).digest()


def time_ordered_id(millis: int, counter: int) -> str:
    """A UUIDv7-shaped id whose order follows (millis, counter), as the store's ids follow
    time: inserts go to the right edge of the id indexes."""
    random_bits = int.from_bytes(os.urandom(4), "big") & 0x3FFFFFFF
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | 0b10 << 62 | (counter & 0xFFFFFFFF) << 30 | random_bits
    return str(uuid.UUID(int=value))


def rows(count: int, title: str, content: str, tags: tuple[str, ...]) -> list[Row]:
    now_us = time.time_ns() // 1000
    return [
        Row(
            time_ordered_id(now_us // 1000, index),
            f"{title} {index:06d}",
            content,
            tags,
            index + 1,
            now_us,
            str(uuid.uuid4()),
        )
        for index in range(count)
    ]


def psql_seconds(output: str) -> float:
    """The sum of psql's `\\timing` lines (`Time: 12.345 ms`, also `Time: 1234.567 ms (00:01.235)`)."""
    found = TIMING.findall(output)
    if not found:
        raise RuntimeError(f"psql printed no timing: {output[-500:]!r}")
    return sum(float(value) for value in found) / 1000


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _array(tags: tuple[str, ...]) -> str:
    return "{" + ",".join(tags) + "}"


def _batches(all_rows: list[Row]) -> list[list[Row]]:
    return [all_rows[start : start + IMPORT_BATCH] for start in range(0, len(all_rows), IMPORT_BATCH)]


def insert_script(owner: str, batch: list[Row]) -> str:
    """One multi-row INSERT of `batch` into notes (autocommit: its own transaction)."""
    values = ",\n".join(
        f"({_literal(row.id)}, {_literal(owner)}, {_literal(row.title)}, {_literal(row.content)}, "
        f"{_literal(_array(row.tags))}, {row.revision}, {row.time_us}, {row.time_us})"
        for row in batch
    )
    return (
        "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time) VALUES\n"
        f"{values};\n"
    )


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_script(owner: str, all_rows: list[Row]) -> str:
    lines = "".join(
        f"{row.id}\t{_copy_text(owner)}\t{_copy_text(row.title)}\t{_copy_text(row.content)}\t"
        f"{_copy_text(_array(row.tags))}\t{row.revision}\t{row.time_us}\t{row.time_us}\n"
        for row in all_rows
    )
    return (
        f"COPY notes (id, owner_id, title, content, tags, revision, create_time, update_time) FROM STDIN;\n{lines}\\.\n"
    )


def timed_script(body: str) -> str:
    return f"\\timing on\n{body}\\timing off\n"


def multi_row_insert_script(owner: str, all_rows: list[Row]) -> str:
    return timed_script("".join(insert_script(owner, batch) for batch in _batches(all_rows)))


def everything_script(owner: str, all_rows: list[Row]) -> str:
    """Every row the import writes, a transaction per batch (see the module's doc)."""
    parts = []
    for batch in _batches(all_rows):
        tags = ",\n".join(
            f"({_literal(owner)}, {_literal(tag)}, {_literal(row.id)})" for row in batch for tag in row.tags
        )
        changes = ",\n".join(
            f"({_literal(owner)}, {row.revision}, 1, {_literal(row.id)}, {_literal(row.title)}, "
            f"{_literal(row.content)}, {_literal(_array(row.tags))}, {row.time_us}, {row.time_us})"
            for row in batch
        )
        requests = ",\n".join(
            f"({_literal(owner)}, {_literal(row.request_id)}, '\\x{row.fingerprint.hex()}', {_literal(row.id)}, "
            f"{row.time_us})"
            for row in batch
        )
        parts.append(
            "BEGIN;\n"
            f"INSERT INTO owner_revisions AS r (owner_id, revision) VALUES ({_literal(owner)}, {len(batch)}) "
            f"ON CONFLICT (owner_id) DO UPDATE SET revision = r.revision + {len(batch)};\n"
            f"{insert_script(owner, batch)}"
            f"INSERT INTO note_tags (owner_id, tag, note_id) VALUES\n{tags};\n"
            "INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, "
            f"update_time) VALUES\n{changes};\n"
            "INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) VALUES\n"
            f"{requests};\n"
            "COMMIT;\n"
        )
    return timed_script("".join(parts))


def sqlite_bulk_insert(schema_sql: str, path: Path, owner: str, all_rows: list[Row], everything: bool = False) -> float:
    """Creates the notes schema in a new SQLite file at `path` and inserts `all_rows` into its
    notes table (with `everything`, every row the import writes), IMPORT_BATCH notes per
    transaction; returns the seconds the inserts took."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executescript(schema_sql)
        values = [
            (row.id, owner, row.title, row.content, ",".join(row.tags), row.revision, row.time_us, row.time_us)
            for row in all_rows
        ]
        statement = (
            "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        tags = [(owner, tag, row.id) for row in all_rows for tag in row.tags]
        changes = [
            (owner, row.revision, 1, row.id, row.title, row.content, ",".join(row.tags), row.time_us, row.time_us)
            for row in all_rows
        ]
        requests = [(owner, row.request_id, row.fingerprint, row.id, row.time_us) for row in all_rows]
        began = time.perf_counter()
        tag_start = 0
        for start in range(0, len(values), IMPORT_BATCH):
            batch = values[start : start + IMPORT_BATCH]
            connection.execute("BEGIN")
            if everything:
                connection.execute(
                    "INSERT INTO owner_revisions (owner_id, revision) VALUES (?, ?) "
                    "ON CONFLICT (owner_id) DO UPDATE SET revision = revision + excluded.revision",
                    (owner, len(batch)),
                )
            connection.executemany(statement, batch)
            if everything:
                tag_end = tag_start + sum(len(row.tags) for row in all_rows[start : start + IMPORT_BATCH])
                connection.executemany(
                    "INSERT INTO note_tags (owner_id, tag, note_id) VALUES (?, ?, ?)", tags[tag_start:tag_end]
                )
                tag_start = tag_end
                connection.executemany(
                    "INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, "
                    "update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    changes[start : start + IMPORT_BATCH],
                )
                connection.executemany(
                    "INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) "
                    "VALUES (?, ?, ?, ?, ?)",
                    requests[start : start + IMPORT_BATCH],
                )
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - began
        (count,) = connection.execute("SELECT count(*) FROM notes").fetchone()
        if count != len(all_rows):
            raise RuntimeError(f"sqlite3 holds {count} notes after inserting {len(all_rows)}")
        return elapsed
    finally:
        connection.close()


def sqlite_schema(repo_root: Path) -> str:
    files = sorted((repo_root / "crates/notes/migrations/sqlite").glob("*.sql"))
    if not files:
        raise FileNotFoundError("no migrations in crates/notes/migrations/sqlite")
    return "\n".join(path.read_text() for path in files)


@dataclass
class ImportResult:
    seconds: float
    created: int
    already_present: int
    error_count: int
    load_cpu_s: float

    @property
    def notes_per_s(self) -> float:
        return self.created / self.seconds if self.seconds > 0 else 0.0

    def problems(self, expected: int) -> list[str]:
        found = []
        if self.created != expected:
            found.append(f"ImportNotes created {self.created} of {expected} notes")
        if self.already_present:
            found.append(f"ImportNotes found {self.already_present} items already present in a fresh import")
        if self.error_count:
            found.append(f"ImportNotes refused {self.error_count} items")
        return found

    def environmental_problems(self) -> list[str]:
        busy = self.load_cpu_s / self.seconds if self.seconds > 0 else 0.0
        if busy >= SATURATED_LOAD_CORE:
            return [f"the import client kept its core {busy:.0%} busy: the rate may be its own limit"]
        return []


def import_notes(stubs, address: str, token: str, requests: list[bytes]) -> ImportResult:
    """One ImportNotes call sending `requests` (serialised ImportNotesRequest messages)."""
    import grpc

    from .stubs import bearer

    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        call = channel.stream_unary(
            "/notesuite.notes.v1.NotesService/ImportNotes",
            request_serializer=None,
            response_deserializer=stubs.notes_pb2.ImportNotesResponse.FromString,
        )
        # All of this process's threads (grpcio sends from one of its own), ns resolution.
        cpu_before = time.process_time()
        began = time.perf_counter()
        summary = call(iter(requests), metadata=bearer(token), timeout=CALL_TIMEOUT_S)
        elapsed = time.perf_counter() - began
        cpu_after = time.process_time()
    return ImportResult(
        seconds=elapsed,
        created=summary.created_count,
        already_present=summary.already_present_count,
        error_count=summary.error_count,
        load_cpu_s=cpu_after - cpu_before,
    )
