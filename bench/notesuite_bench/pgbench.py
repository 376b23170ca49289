"""pgbench, the database's own rate for the rows CreateNote writes, in tables made by the notes
service's own migration (in a database of their own on the same server).

Two custom scripts, both sending title, content and tags as parameters of prepared statements
(`-M prepared`, as sqlx does), one client connection per call in flight, each client writing
as an owner of its own (`:client_id`), as the CreateNote driver's workers do:

- SINGLE_ROW: the database's own single-row insert rate (SPEC §11's baseline): one INSERT of a
  note row (same columns, sizes, time-ordered UUID id) per transaction, autocommit. No tag
  rows, no idempotency record, no owner revision: those are CreateNote's own work.
- TRANSACTION: the very statements a CreateNote with a request_id runs
  (crates/notes/src/store/postgres.rs): BEGIN; the owner revision upsert; the request_id
  lookup; one INSERT with CTEs for the note, its tag rows and the request record; COMMIT. The
  note id and the time come back from the first statement (`\\gset`, no extra round trip)
  where the store computes them in Rust.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import pg
from .processes import LOAD_CORE

# A UUIDv7-like id: 48 bits of milliseconds, then random bits, so that ids increase with time
# as the store's UUIDv7 do (inserts go to the right edge of the id indexes).
UUID7 = (
    "(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7' "
    "|| substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid"
)
NOW_MICROS = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
# An owner id shaped like the users service's (a UUID string), one per pgbench client.
OWNER = "('00000000-0000-7000-8000-' || lpad(:client_id::text, 12, '0'))"
REQUEST_ID = "md5(:client_id::text || '-' || :request::text)::uuid"

SINGLE_ROW = f"""\
INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
VALUES ({UUID7}, {OWNER}, :title, :content, :tags::text[], 1, {NOW_MICROS}, {NOW_MICROS});
"""

TRANSACTION = f"""\
\\set request random(1, 9000000000000000000)
BEGIN;
INSERT INTO owner_revisions AS r (owner_id, revision) VALUES ({OWNER}, 1) ON CONFLICT (owner_id) DO UPDATE SET revision = r.revision + 1 RETURNING revision, {UUID7} AS note_id, {NOW_MICROS} AS now
\\gset
SELECT fingerprint, note_id FROM create_requests WHERE owner_id = {OWNER} AND request_id = {REQUEST_ID};
WITH note AS (INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time) VALUES (:note_id::uuid, {OWNER}, :title, :content, :tags::text[], :revision, :now, :now)), tags AS (INSERT INTO note_tags (owner_id, tag, note_id) SELECT {OWNER}, tag, :note_id::uuid FROM unnest(:tags::text[]) AS tag) INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) SELECT {OWNER}, {REQUEST_ID}, :fingerprint::bytea, :note_id::uuid, :now WHERE {REQUEST_ID} IS NOT NULL;
COMMIT;
"""  # noqa: E501 (pgbench reads one SQL command per line unless it ends with ';': kept as the store sends them)

SCRIPTS = {"single-row": SINGLE_ROW, "transaction": TRANSACTION}


@dataclass
class PgbenchResult:
    tps: float
    processed: int
    failed: int
    elapsed_s: float
    load_cpu_s: float
    output: str
    log_files: list[Path] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.processed == 0:
            found.append("pgbench: no transaction was processed")
        if self.failed:
            found.append(f"pgbench: {self.failed} failed transactions")
        return found


def parse_output(output: str) -> tuple[float, int, int]:
    """tps (without the initial connection time), transactions processed, failed."""

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"pgbench output has no match for {pattern!r}:\n{output[-2000:]}")
        return float(match.group(1))

    failed_match = re.search(r"number of failed transactions: (\d+)", output)
    return (
        number(r"tps = ([\d.]+) \(without initial connection time\)"),
        int(number(r"number of transactions actually processed: (\d+)")),
        int(failed_match.group(1)) if failed_match else 0,
    )


def run(
    url: str,
    script_file: Path,
    clients: int,
    duration_s: float,
    variables: dict[str, str],
    log_prefix: Path | None = None,
) -> PgbenchResult:
    """Runs pgbench for `duration_s` with `clients` connections, one thread, pinned to the load
    core; with `log_prefix`, a line per transaction (its latency in µs in the third column)."""
    argv = [
        "taskset", "-c", str(LOAD_CORE),
        pg.tool("pgbench"), "--no-vacuum", "--protocol=prepared",
        "--client", str(clients), "--jobs", "1",
        "--time", str(max(1, round(duration_s))),
        "--file", str(script_file),
    ]  # fmt: skip
    for name, value in variables.items():
        argv += ["--define", f"{name}={value}"]
    if log_prefix is not None:
        argv += ["--log", f"--log-prefix={log_prefix}"]
    argv.append(url)
    pid_start = os.times()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=duration_s * 5 + 120)
    pid_end = os.times()
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench exited {completed.returncode}: {completed.stderr[-2000:]}")
    tps, processed, failed = parse_output(completed.stdout)
    logs = sorted(log_prefix.parent.glob(f"{log_prefix.name}.*")) if log_prefix is not None else []
    load_cpu = (pid_end.children_user - pid_start.children_user) + (pid_end.children_system - pid_start.children_system)
    return PgbenchResult(tps, processed, failed, float(round(duration_s)) or 1.0, load_cpu, completed.stdout, logs)
