"""notes on PostgreSQL, in one run:

- Writes: CreateNote through the gateway on PostgreSQL against pgbench on the same server at
  the same concurrency (SPEC §11: ≥ 0.7× the database's own single-row insert rate). Every
  CreateNote carries a fresh request_id (idempotent creates are what clients send) and every
  call in flight has an owner of its own: one owner's writes are serialised by design (the
  owner revision row), so one token for all would measure that lock. h2load sends one fixed
  body over one set of headers, which would repeat one request_id for one owner; the calls are
  made by grpc_load.py instead (grpc.aio, pinned to the load core like h2load). pgbench runs
  two scripts (pgbench.py): the single-row INSERT of the budget, and CreateNote's own SQL
  transaction, which tells the database's share of a CreateNote from notesuite's.
- Reads: GetNote and ListNotes (a page of 20, and a page of 20 filtered by tag) straight to
  notes, one notes process on SQLite and one on PostgreSQL holding the same notes, h2load
  driving both.
- The EXPLAIN (ANALYZE, BUFFERS) of a tag-filtered page, with the query of the store's source,
  on a data set of its own.

users, notes and the gateway run pinned to core 1 as everywhere in the harness; PostgreSQL is
a shared server the harness does not start or pin: its backends run on both cores.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import pg, pgbench
from ..context import Context
from ..grpc_load import PLACEHOLDER_REQUEST_ID, GrpcLoad, GrpcLoadResult
from ..load import Load, Target, compress, latencies_from_log
from ..measure import Observed, Run, RunSpec
from ..metrics import Method
from ..processes import machine_busy_now
from ..services import SERVICE_NAMES, Server
from ..stubs import bearer, grpc_frame

NAME = "postgres"
# Calls in flight = database sessions busy on either side: the notes pool is sized to the
# largest load, so that no call waits for a connection pgbench would have had.
WRITE_LOADS = (Load(clients=4, streams=2), Load(clients=4, streams=8))
POOL_SIZE = max(load.in_flight for load in WRITE_LOADS)
READ_LOAD = Load(clients=4, streams=10)

CREATE_NOTE = "CreateNote via gateway"
PGBENCH_SINGLE_ROW = "pgbench single-row INSERT"
PGBENCH_TRANSACTION = "pgbench CreateNote's transaction"
WRITE_SERIES = (CREATE_NOTE, PGBENCH_SINGLE_ROW, PGBENCH_TRANSACTION)
PGBENCH_SCRIPTS = {PGBENCH_SINGLE_ROW: "single-row", PGBENCH_TRANSACTION: "transaction"}

GET_NOTE, LIST_NOTES, LIST_TAGGED = "GetNote", "ListNotes", "ListNotes tag"
READ_METHODS = (GET_NOTE, LIST_NOTES, LIST_TAGGED)
SQLITE, POSTGRES = "SQLite", "PostgreSQL"
BACKENDS = (SQLITE, POSTGRES)

# A realistic note: a 20-character title, 1 KiB of text, two tags.
TITLE = "Quarterly plan notes"
CONTENT = (
    ("Agreed with the team to move the launch review to Thursday; open questions: pricing tiers, "
     "the migration guide, and who owns on-call during the first week. ") * 8
)[:1024]  # fmt: skip
TAGS = ("work", "planning")
# The request fingerprint pgbench stores (the store's is a SHA-256 of the request).
FINGERPRINT = "\\x" + "5a" * 32
# The notes each read backend holds for its reader, one in five tagged "work".
READ_NOTES = 200
TAGGED_EVERY = 5
READ_TAG = "work"
PAGE_SIZE = 20
# The EXPLAIN data set: one owner with 10,000 notes (20 % tagged "work") among others.
EXPLAIN_OWNER_NOTES = 10_000
EXPLAIN_OTHER_OWNERS = 20
EXPLAIN_NOTES_PER_OTHER = 1_000
EXPLAIN_OWNER = "018f0000-0000-7000-8000-00000000e001"
STORE_SOURCE = "crates/notes/src/store/postgres.rs"
TAG_QUERY_MARK = "FROM note_tags t JOIN notes n"


def planned_runs(rounds: int) -> int:
    return rounds * (len(WRITE_LOADS) * len(WRITE_SERIES) + len(READ_METHODS) * len(BACKENDS))


def read_series(method: str, backend: str) -> str:
    return f"{method} {backend}"


def run(context: Context) -> list[Run]:
    postgres = pg.Postgres(context.postgres_url)
    context.progress.say(f"PostgreSQL {postgres.check()} at {context.postgres_url}")
    runs: list[Run] = []
    with postgres.session():
        context.sections[NAME] = explain_tag_page(context, postgres)
        with context.process_group() as group:
            writes = _start_writes(context, postgres, group)
            reads = _start_reads(context, postgres, group, writes.gateway)
            for round_ in range(1, context.rounds + 1):
                for load in WRITE_LOADS:
                    runs.append(_create_note(context, writes, round_, load))
                    for series in (PGBENCH_SINGLE_ROW, PGBENCH_TRANSACTION):
                        runs.append(_pgbench(context, postgres, writes, series, round_, load))
                for method in READ_METHODS:
                    for backend in BACKENDS:
                        runs.append(context.measure(reads.spec(method, backend, round_)))
    return runs


@dataclass
class Writes:
    gateway: Server
    notes: Server
    tokens: tuple[str, ...]
    template: bytes
    pgbench_url: str
    script_files: dict[str, Path]


def _start_writes(context: Context, postgres: pg.Postgres, group) -> Writes:
    notes_url = postgres.create_database("writes")
    pgbench_url = postgres.create_database("pgbench")
    postgres.sql(pgbench_url, pg.migration_sql(context.repo_root))
    users = context.notesuite.start(group, "users")
    notes = context.notesuite.start(
        group,
        "notes",
        name="notes-postgres-writes",
        database_url=notes_url,
        extra_args=("--database-max-connections", str(POOL_SIZE)),
    )
    gateway = context.notesuite.start(group, "gateway", backends=(users, notes))
    # One owner per call in flight at the largest load.
    tokens = tuple(context.stubs.sign_up(gateway.address) for _ in range(POOL_SIZE))
    request = context.stubs.create_note_request(TITLE, CONTENT, TAGS, PLACEHOLDER_REQUEST_ID)
    script_files = {}
    for series, script in PGBENCH_SCRIPTS.items():
        script_files[series] = context.raw_dir / f"pgbench-{script}.sql"
        script_files[series].write_text(pgbench.SCRIPTS[script])
    (context.raw_dir / "CreateNote-request-template.bin").write_bytes(grpc_frame(request))
    return Writes(gateway, notes, tokens, request.SerializeToString(), pgbench_url, script_files)


def _create_note(context: Context, writes: Writes, round_: int, load: Load) -> Run:
    method = Method(SERVICE_NAMES["notes"], "CreateNote")
    driver = _CountingWal(
        GrpcLoad(
            address=writes.gateway.address,
            path=method.path,
            template=writes.template,
            tokens=writes.tokens[: load.in_flight],
            workers=load.in_flight,
            clients=load.clients,
            work_dir=context.work_dir,
        ),
        pg.Postgres(context.postgres_url),
    )
    spec = RunSpec(
        scenario=NAME,
        series=CREATE_NOTE,
        round=round_,
        target=Target(writes.gateway.address, method.path, context.raw_dir / "CreateNote-request-template.bin"),
        load=load,
        observed=(Observed("gateway", writes.gateway, method), Observed("notes", writes.notes, method)),
        driver=driver,
    )

    def measure() -> Run:
        made = context.runner.run(spec)
        _charge_the_rest(made, ("cpu_us_load", "cpu_us_notes", "cpu_us_gateway"))
        return made

    return context.guarded(NAME, CREATE_NOTE, round_, load.in_flight, measure)


@dataclass(frozen=True)
class _CountingWal:
    """A driver that also counts the WAL the server wrote during the measured calls."""

    inner: GrpcLoad
    postgres: pg.Postgres

    def run_for(self, duration_s: float) -> GrpcLoadResult:
        return self.inner.run_for(duration_s)

    def run_calls(self, calls: int, expected_s: float, log_file: Path) -> GrpcLoadResult:
        before = self.postgres.wal_lsn_bytes()
        result = self.inner.run_calls(calls, expected_s, log_file)
        result.extra["wal_bytes_per_call"] = (self.postgres.wal_lsn_bytes() - before) / max(result.succeeded, 1)
        return result


def _charge_the_rest(made: Run, measured: tuple[str, ...]) -> None:
    """CPU per call the machine spent beyond the processes measured one by one: PostgreSQL's
    backends and background writers, and whatever else ran (the server is shared)."""
    values = made.values
    if "cpu_us_machine" in values and all(key in values for key in measured):
        values["cpu_us_other"] = values["cpu_us_machine"] - sum(values[key] for key in measured)


def _pgbench(context: Context, postgres: pg.Postgres, writes: Writes, series: str, round_: int, load: Load) -> Run:
    def measure() -> Run:
        made = Run(NAME, series, round_, load.in_flight, verified_by="pgbench: no failed transaction")
        variables = {"title": TITLE, "content": CONTENT, "tags": "{" + ",".join(TAGS) + "}"}
        if series == PGBENCH_TRANSACTION:
            variables["fingerprint"] = FINGERPRINT
        script = writes.script_files[series]
        clients = load.in_flight
        warmup = pgbench.run(writes.pgbench_url, script, clients, context.runner.warmup_s, variables)
        made.reject(*(f"warm-up: {problem}" for problem in warmup.problems()))
        log_dir = context.raw_dir / "pgbench-logs"
        log_dir.mkdir(exist_ok=True)
        prefix = log_dir / _slug(series, load.in_flight, round_)
        before_busy, before_wal, began = machine_busy_now(), postgres.wal_lsn_bytes(), time.perf_counter()
        result = pgbench.run(writes.pgbench_url, script, clients, context.runner.duration_s, variables, prefix)
        # The window holds pgbench's start, connections and exit too (its rate does not).
        window_s = time.perf_counter() - began
        busy_s, wal = machine_busy_now() - before_busy, postgres.wal_lsn_bytes() - before_wal
        made.reject(*result.problems())
        if not result.log_files:
            made.reject("pgbench wrote no transaction log")
            return made
        log_file = prefix.with_suffix(".log")
        with log_file.open("w") as sink:
            for part in result.log_files:
                sink.write(part.read_text())
                part.unlink()
        latencies = latencies_from_log(log_file)
        made.files.append(compress(log_file).name)
        calls = max(result.processed, 1)
        made.values = {
            "rps": result.tps,
            "p50_ms": latencies.p50_ms,
            "p99_ms": latencies.p99_ms,
            "p999_ms": latencies.p999_ms,
            "calls": float(result.processed),
            "seconds": result.elapsed_s,
            "cpu_us_load": result.load_cpu_s * 1e6 / calls,
            "cpu_us_machine": busy_s * 1e6 / calls,
            "machine_busy_pct": busy_s / ((os.cpu_count() or 1) * window_s) * 100,
            "wal_bytes_per_call": wal / calls,
        }
        _charge_the_rest(made, ("cpu_us_load",))
        return made

    return context.guarded(NAME, series, round_, load.in_flight, measure)


@dataclass
class Reads:
    servers: dict[str, Server]
    token: str
    body_files: dict[tuple[str, str], Path]

    def spec(self, method: str, backend: str, round_: int) -> RunSpec:
        rpc = Method(SERVICE_NAMES["notes"], GET_NOTE if method == GET_NOTE else LIST_NOTES)
        server = self.servers[backend]
        return RunSpec(
            scenario=NAME,
            series=read_series(method, backend),
            round=round_,
            target=Target(server.address, rpc.path, self.body_files[(method, backend)], bearer(self.token)),
            load=READ_LOAD,
            observed=(Observed("notes", server, rpc),),
        )


def _start_reads(context: Context, postgres: pg.Postgres, group, gateway: Server) -> Reads:
    servers = {
        SQLITE: context.notesuite.start(group, "notes", name="notes-sqlite-reads"),
        POSTGRES: context.notesuite.start(
            group, "notes", name="notes-postgres-reads", database_url=postgres.create_database("reads")
        ),
    }
    # A token from the writes' gateway: every notes process checks it with the same key.
    token = context.stubs.sign_up(gateway.address)
    requests = [
        context.stubs.create_note_request(
            f"{TITLE[:16]} {index:03d}", CONTENT, TAGS if index % TAGGED_EVERY == 0 else ("personal", "ideas")
        )
        for index in range(READ_NOTES)
    ]
    body_files = {}
    for backend, server in servers.items():
        last_id = context.stubs.create_notes(server.address, token, requests)[-1]
        bodies = {
            GET_NOTE: context.stubs.get_note_request(last_id),
            LIST_NOTES: context.stubs.list_notes_request(PAGE_SIZE),
            LIST_TAGGED: context.stubs.list_notes_request(PAGE_SIZE, READ_TAG),
        }
        for method, request in bodies.items():
            path = context.raw_dir / f"{_slug(method, backend)}-request.bin"
            path.write_bytes(grpc_frame(request))
            body_files[(method, backend)] = path
        for tag in ("", READ_TAG):
            listed = context.stubs.list_notes(server.address, token, PAGE_SIZE, tag)
            if listed != PAGE_SIZE:
                raise RuntimeError(f"{backend}: a ListNotes page (tag {tag!r}) holds {listed} notes, not {PAGE_SIZE}")
    return Reads(servers, token, body_files)


def tag_page_query(repo_root: Path) -> str:
    """The SQL of the tag branch of `list` in the PostgreSQL store, read from its source, so
    that the EXPLAIN is of the query the service runs today."""
    source = (repo_root / STORE_SOURCE).read_text()
    literals = [text for text in re.findall(r'"((?:[^"\\]|\\.)*)"', source) if TAG_QUERY_MARK in text]
    if len(literals) != 1:
        raise RuntimeError(f"{STORE_SOURCE}: expected one SQL string with {TAG_QUERY_MARK!r}, found {len(literals)}")
    return " ".join(literals[0].split())


def explain_sql(query: str, owner: str, tag: str, limit: int, byte_budget: int = 1 << 20) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the prepared query as sqlx runs it: first with the plan
    PostgreSQL makes for these parameters, then with the generic plan a prepared statement may
    switch to after five executions."""
    arguments = f"'{owner}', '{tag}', '{uuid.UUID(int=(1 << 128) - 1)}', {limit}, {byte_budget}"
    return f"""\
PREPARE tag_page(text, text, uuid, bigint, bigint) AS {query};
\\o /dev/null
EXECUTE tag_page({arguments});
\\o
\\echo '-- custom plan (the first executions of a prepared statement)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE tag_page({arguments});
SET plan_cache_mode = force_generic_plan;
\\echo '-- generic plan (what a prepared statement may switch to after five executions)'
EXPLAIN (ANALYZE, BUFFERS) EXECUTE tag_page({arguments});
"""


def seed_sql(owner: str) -> str:
    """One owner with EXPLAIN_OWNER_NOTES notes, one in five tagged "work", interleaved in time
    with EXPLAIN_OTHER_OWNERS others' notes (tagged alike); time-ordered ids like UUIDv7."""
    others = EXPLAIN_OTHER_OWNERS * EXPLAIN_NOTES_PER_OTHER
    total = EXPLAIN_OWNER_NOTES + others
    every = total // EXPLAIN_OWNER_NOTES
    return f"""\
INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
SELECT (lpad(to_hex(1700000000000 + g), 12, '0') || '7' || substr(md5(g::text), 1, 3) || '8'
        || substr(md5(g::text), 4, 15))::uuid,
       owner, 'Note ' || g, repeat(md5(g::text), 32),
       CASE WHEN (g / {every}) % {TAGGED_EVERY} = 0 THEN ARRAY['work', 'planning'] ELSE ARRAY['personal', 'ideas'] END,
       g, (1700000000000 + g) * 1000, (1700000000000 + g) * 1000
FROM (SELECT g, CASE WHEN g % {every} = 0 AND g / {every} <= {EXPLAIN_OWNER_NOTES} THEN '{owner}'
                     ELSE '018f0000-0000-7000-8000-' || lpad((g % {EXPLAIN_OTHER_OWNERS})::text, 12, '0') END AS owner
      FROM generate_series(1, {total}) AS g) AS s;
INSERT INTO note_tags (owner_id, tag, note_id) SELECT owner_id, unnest(tags), id FROM notes;
INSERT INTO owner_revisions (owner_id, revision) SELECT owner_id, max(revision) FROM notes GROUP BY owner_id;
VACUUM ANALYZE;
SELECT count(*) FILTER (WHERE owner_id = '{owner}'), count(*) FILTER (WHERE owner_id = '{owner}' AND 'work' = ANY (tags)),
       count(DISTINCT owner_id), count(*) FROM notes;
"""  # noqa: E501


def explain_tag_page(context: Context, postgres: pg.Postgres) -> str:
    """Seeds a database of its own, runs the EXPLAIN, drops the database (before any
    measurement); returns the markdown for results.md and writes raw/postgres-explain.txt."""
    url = postgres.create_database("explain")
    postgres.sql(url, pg.migration_sql(context.repo_root))
    counts = postgres.sql(url, seed_sql(EXPLAIN_OWNER)).strip().splitlines()[-1].split("|")
    owner_notes, owner_tagged, owners, notes = (int(value) for value in counts)
    query = tag_page_query(context.repo_root)
    plans = postgres.sql(url, explain_sql(query, EXPLAIN_OWNER, "work", 50 + 1))
    postgres.drop_database(url)
    text = (
        f"Data set: {notes:,} notes of {owners} owners; the owner listed has {owner_notes:,} notes, "
        f'{owner_tagged:,} tagged "work" (every note has two tags; ~1 KiB content; VACUUM ANALYZE after loading).\n'
        f"Query ({STORE_SOURCE}, `list`, tag branch), first page of 50 (LIMIT 51):\n\n"
        f"```sql\n{query}\n```\n\n```\n{plans.rstrip()}\n```"
    )
    (context.raw_dir / "postgres-explain.txt").write_text(f"{query}\n\n{plans}")
    return text


def _slug(*parts: object) -> str:
    text = "-".join(str(part) for part in parts)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
