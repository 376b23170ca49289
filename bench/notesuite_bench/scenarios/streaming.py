"""WatchNotes and ImportNotes (SPEC §11, issue 10), straight to notes (no gateway), with user
tokens the harness signs itself with keygen's key (tokens.py):

- Memory per stream: one fresh notes process (SQLite; and the watched PostgreSQL replica below)
  holds `--watch-streams` WatchNotes streams of one owner (`--max-watches-per-user` raised to
  that), opened over HTTP/2 connections of STREAMS_PER_CONNECTION streams each (notes allows
  1,024 per connection) in OPEN_STEPS equal steps, each stream started "from now" and counted open once its first
  HEARTBEAT arrived. KB per stream = the RSS growth over all steps ÷ streams (the connections
  are opened, and their cost read, before). The same is measured, in the same round, for
  Health/Watch streams on a fresh notes process (what any tonic stream costs there) and, with
  the reference servers, on grpc-go and bare tonic (`Health/Watch` of service "": SERVING
  at once, then nothing).
- Fan-out: with those streams open, WRITES CreateNotes of that owner (a realistic note, a fresh
  request_id each) go to the same process, WRITE_PAUSE_S apart, after one unmeasured write; for
  each, the delay from just before the call is sent to the CREATED event's arrival on every
  stream (the kernel's receive timestamp: watch_load.py): p50, p99 and max over the streams,
  then the median over the writes.
- Across replicas (PostgreSQL): two notes processes on one database; the streams on the second,
  the writes through the first (and, to tell the hop from the database, through the second).
- ImportNotes vs the database's own bulk insert of the same notes (imports.py), SQLite and
  PostgreSQL, fresh databases and a fresh notes process every round.

The streams are held by watch_load.py, a raw HTTP/2 client in a process of its own pinned to
the load core; every notesuite process and peer runs on the server core, as everywhere in the
harness. PostgreSQL is the shared server of the postgres scenario: when it does not answer, its
parts are listed as not run (unless NOTESUITE_REQUIRE_POSTGRES=1, which makes that an error).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import imports, metrics, pg, tokens
from ..context import Context
from ..load import nearest_rank
from ..measure import NotRun, Run
from ..services import PEER_KINDS, SERVICE_NAMES, Server
from ..stubs import bearer
from ..watch_load import WatchLoad
from . import postgres as postgres_scenario

NAME = "streaming"
STREAMS_PER_CONNECTION = 100
OPEN_STEPS = 10
STEP_SETTLE_S = 0.3
WRITES = 3
WRITE_PAUSE_S = 0.5
WRITE_TIMEOUT_S = 30
# Streams waiting for their first message at once while opening.
OPEN_WINDOW = 256
# Bytes waiting in one of the watch client's sockets, as a share of its receive buffer (as the
# kernel reports it, bookkeeping included), past which TCP's flow control may have held the
# server back, and the client rather than the server set the pace of the tail. (Arrivals are
# stamped by the kernel: a busy client alone changes nothing; one that lets a socket fill does.)
BACKLOG_SHARE = 0.5
# A default notes process allows this many watch streams (and streaming calls) in all.
NOTES_MAX_WATCHES = 16_384

WATCH_NOTES = metrics.Method(SERVICE_NAMES["notes"], "WatchNotes")
CREATE_NOTE = metrics.Method(SERVICE_NAMES["notes"], "CreateNote")
HEALTH_WATCH_PATH = "/grpc.health.v1.Health/Watch"
# WatchNotesResponse{type: CREATED}: field 1, varint 1, first on the wire.
CREATED_EVENT = b"\x08\x01"

WATCH_SQLITE = "notes WatchNotes (SQLite)"
WATCH_POSTGRES = "notes WatchNotes (PostgreSQL)"
HEALTH_WATCH = "notes Health/Watch"
PEER_WATCH = {"grpc-go": "grpc-go Health/Watch", "tonic current": "bare tonic Health/Watch"}
MEMORY_SERIES = (WATCH_SQLITE, WATCH_POSTGRES, HEALTH_WATCH, *PEER_WATCH.values())
FANOUT_SQLITE = "SQLite, same process"
FANOUT_ACROSS = "PostgreSQL, across replicas"
FANOUT_SAME = "PostgreSQL, same replica"
FANOUT_SERIES = (FANOUT_SQLITE, FANOUT_ACROSS, FANOUT_SAME)
IMPORT_SQLITE = "ImportNotes (SQLite)"
SQLITE_BULK = "sqlite3 batched INSERT"
SQLITE_BULK_ALL = "sqlite3 batched INSERT, all the import's rows"
IMPORT_POSTGRES = "ImportNotes (PostgreSQL)"
PG_MULTI_ROW = "psql multi-row INSERT"
PG_COPY = "psql COPY"
PG_MULTI_ROW_ALL = "psql multi-row INSERT, all the import's rows"
IMPORT_SERIES = (
    IMPORT_SQLITE,
    SQLITE_BULK,
    SQLITE_BULK_ALL,
    IMPORT_POSTGRES,
    PG_MULTI_ROW,
    PG_COPY,
    PG_MULTI_ROW_ALL,
)
# (import, the database's own bulk insert of its notes, which the budget judges it against)
IMPORT_BASELINES = ((IMPORT_SQLITE, SQLITE_BULK), (IMPORT_POSTGRES, PG_MULTI_ROW), (IMPORT_POSTGRES, PG_COPY))
# (import, every row it writes bulk-inserted): where its time goes, not judged.
IMPORT_EVERYTHING = ((IMPORT_SQLITE, SQLITE_BULK_ALL), (IMPORT_POSTGRES, PG_MULTI_ROW_ALL))
POSTGRES_SERIES = (
    WATCH_POSTGRES,
    FANOUT_ACROSS,
    FANOUT_SAME,
    IMPORT_POSTGRES,
    PG_MULTI_ROW,
    PG_COPY,
    PG_MULTI_ROW_ALL,
)
IMPORT_TITLE = "Imported note"
# SPEC §11, as budgets.py judges them.
MEMORY_BUDGET = "≤ 10 KB per WatchNotes stream on one notes process"
FANOUT_BUDGET = "one change reaches every stream with p99 ≤ 100 ms"
IMPORT_BUDGET = "ImportNotes ≥ 0.8× the database's own bulk-insert rate"


def planned_runs(rounds: int, with_peers: bool) -> int:
    per_round = len(MEMORY_SERIES) + len(FANOUT_SERIES) + len(IMPORT_SERIES)
    return rounds * (per_round - (0 if with_peers else len(PEER_WATCH)))


def connections_for(streams: int) -> int:
    return max(1, -(-streams // STREAMS_PER_CONNECTION))


# --- Statistics ---------------------------------------------------------------------------------


def memory_per_stream(rss_kb: list[int], opened: list[int]) -> tuple[float, float]:
    """KB per stream from RSS read before the first step and after each step of opening
    (`opened[i]` streams in step i): the whole growth ÷ all streams, and the median step's."""
    if len(rss_kb) != len(opened) + 1 or not opened or sum(opened) <= 0:
        raise ValueError(f"{len(rss_kb)} RSS readings for {len(opened)} steps")
    total = (rss_kb[-1] - rss_kb[0]) / sum(opened)
    steps = [
        (after - before) / count for (before, after), count in zip(itertools.pairwise(rss_kb), opened, strict=True)
    ]
    return total, statistics.median(steps)


def delivery_summary(latencies_us: list[int]) -> dict[str, float]:
    """p50, p99 and max of one write's delivery to every stream, in ms (nearest rank)."""
    if not latencies_us:
        raise ValueError("no delivery")
    ordered = np.sort(np.asarray(latencies_us, dtype=np.int64))
    return {
        "p50_ms": nearest_rank(ordered, 500) / 1000,
        "p99_ms": nearest_rank(ordered, 990) / 1000,
        "max_ms": float(ordered[-1]) / 1000,
    }


def median_of_writes(summaries: list[dict[str, float]]) -> dict[str, float]:
    """Each value's median over a round's writes, and the worst write's p99 and max."""
    if not summaries:
        raise ValueError("no write")
    combined = {key: statistics.median(summary[key] for summary in summaries) for key in summaries[0]}
    combined["worst_p99_ms"] = max(summary["p99_ms"] for summary in summaries)
    combined["worst_max_ms"] = max(summary["max_ms"] for summary in summaries)
    return combined


def open_problems(answer: dict, expected: int) -> list[str]:
    """What the watch client's answer to `open` says went wrong."""
    problems = []
    if answer["opened"] != expected:
        problems.append(f"{answer['opened']} of {expected} streams opened")
    if answer["ended"]:
        problems.append(f"streams ended while opening (grpc-status: count): {answer['ended']}")
    if answer["no_first_message"]:
        problems.append(f"{answer['no_first_message']} streams got no first message")
    return problems


def write_problems(answer: dict) -> list[str]:
    problems = []
    if answer["call_status"] != "0":
        problems.append(f"CreateNote ended with grpc-status {answer['call_status']}")
    if answer["missing"]:
        problems.append(f"{answer['missing']} of {answer['streams']} streams did not get the change")
    if answer["ended"]:
        problems.append(f"streams ended during the write (grpc-status: count): {answer['ended']}")
    return problems


def backlog_problems(answer: dict) -> list[str]:
    """Whether the watch client fell so far behind that TCP may have slowed the server."""
    backlog, buffer = answer["max_backlog_bytes"], answer["receive_buffer_bytes"]
    if buffer and backlog >= BACKLOG_SHARE * buffer:
        problem = (
            f"the watch client fell behind: {backlog / 1024:.0f} KiB waited in one socket (receive buffer "
            f"{buffer / 1024:.0f} KiB), so TCP may have held the server back"
        )
        return [problem]
    return []


def busy_share(answer: dict) -> float:
    """How busy the watch client was from the first stream's arrival to the last: shown, not
    judged (a client reading one message at a time as they trickle in is busy without being
    behind; backlog_problems tells whether it was behind)."""
    return min(answer["spread_cpu_s"] / answer["spread_s"], 1.0) if answer["spread_s"] > 0 else 0.0


# --- The scenario -------------------------------------------------------------------------------


def run(context: Context) -> list[Run]:
    postgres = _postgres(context)
    runs: list[Run] = []
    with postgres.session() if postgres else contextlib.nullcontext():
        for round_ in range(1, context.rounds + 1):
            runs += _watch_sqlite(context, round_)
            runs.append(_health_watch(context, round_))
            if context.peers is not None:
                runs += [_peer_watch(context, kind, round_) for kind in PEER_KINDS if kind.name in PEER_WATCH]
            if postgres:
                runs += _watch_postgres(context, postgres, round_)
            runs += _import_sqlite(context, round_)
            if postgres:
                runs += _import_postgres(context, postgres, round_)
    return runs


def _postgres(context: Context) -> pg.Postgres | None:
    """The PostgreSQL server, or None (its parts listed as not run) when it does not answer."""
    postgres = pg.Postgres(context.postgres_url)
    try:
        version = postgres.check()
    except RuntimeError as error:
        if os.environ.get("NOTESUITE_REQUIRE_POSTGRES") == "1":
            raise
        context.progress.say(f"*** {NAME}: the PostgreSQL parts are NOT RUN: {error}")
        reason = f"PostgreSQL did not answer at {pg.redacted(context.postgres_url)} (--postgres)"
        context.not_run += [
            NotRun(f"{NAME}: WatchNotes across two replicas", FANOUT_BUDGET, reason),
            NotRun(f"{NAME}: WatchNotes on PostgreSQL", MEMORY_BUDGET, reason),
            NotRun(f"{NAME}: ImportNotes on PostgreSQL", IMPORT_BUDGET, reason),
        ]
        return None
    context.progress.say(f"{NAME}: PostgreSQL {version} at {pg.redacted(context.postgres_url)}")
    return postgres


@dataclass
class _Held:
    """Streams held open on one server, and the run their memory was measured into."""

    client: WatchLoad
    run: Run


def _notes_args(streams: int) -> tuple[str, ...]:
    args = ["--max-watches-per-user", str(streams)]
    if streams > NOTES_MAX_WATCHES:
        args += ["--max-watches", str(streams), "--max-open-streams", str(streams)]
    return tuple(args)


def _hold(context: Context, series: str, round_: int, server: Server, path: str, headers: tuple, body: bytes) -> _Held:
    """Opens context.watch_streams streams on `server` in OPEN_STEPS steps, reading its RSS
    between them; returns the client (still holding them) and the run with the memory values."""
    streams = context.watch_streams
    made = Run(NAME, series, round_, None, verified_by="every stream's first message, no stream ended")
    log = context.raw_dir / "logs" / f"watch-client-{_slug(series)}-r{round_}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    client = WatchLoad(log)
    try:
        process = server.process
        idle_kb = process.rss_kb()
        connections = connections_for(streams)
        client.connect(server.address, connections)
        time.sleep(STEP_SETTLE_S)
        rss = [process.rss_kb()]
        opened, seconds, load_cpu = [], 0.0, 0.0
        for step in range(OPEN_STEPS):
            count = streams * (step + 1) // OPEN_STEPS - streams * step // OPEN_STEPS
            if count == 0:
                continue
            answer = client.open(path, headers, body, count, OPEN_WINDOW)
            made.reject(*open_problems(answer, count))
            opened.append(count)
            seconds += answer["seconds"]
            load_cpu += answer["load_cpu_s"]
            time.sleep(STEP_SETTLE_S)
            rss.append(process.rss_kb())
        total, median_step = memory_per_stream(rss, opened)
        made.values = {
            "streams": float(streams),
            "kb_per_stream": total,
            "kb_per_stream_median_step": median_step,
            "kb_per_connection": (rss[0] - idle_kb) / connections,
            "rss_before_mb": rss[0] / 1024,
            "rss_after_mb": rss[-1] / 1024,
            "opens_per_s": streams / seconds if seconds > 0 else 0.0,
            "load_cpu_us_per_open": load_cpu * 1e6 / streams,
        }
        if any(after < before for before, after in itertools.pairwise(rss)):
            made.warnings.append("RSS fell during a step of opening streams (an allocator gave memory back)")
        if process.exited():
            made.reject("the server exited while the streams were opened")
    except BaseException:
        client.close()
        raise
    return _Held(client, made)


def _check_gauge(made: Run, server: Server) -> None:
    """The server's own count of open WatchNotes calls must say the streams are open."""
    counted = metrics.scrape(server.metrics_address).active_calls(WATCH_NOTES)
    made.values["server_open_watches"] = float(counted)
    if counted != int(made.values["streams"]):
        made.warnings.append(
            f"rpc_server_active_calls for WatchNotes says {counted} with {int(made.values['streams'])} streams open"
        )


def _fanout(context: Context, held: _Held, series: str, round_: int, write_to: Server, token: str) -> Run:
    """WRITES CreateNotes through `write_to` while `held` holds the streams, after one more
    that is checked but not measured (it warms the writer's pool and statements): the
    delivery of each to every stream."""
    made = Run(NAME, series, round_, None, verified_by="CreateNote OK, the CREATED event on every stream")

    def measure() -> Run:
        summaries, creates_ms, busy, raw, behind = [], [], [], [], []
        clock_stamped = max_backlog = 0
        for index in range(WRITES + 1):
            time.sleep(WRITE_PAUSE_S)
            request = context.stubs.create_note_request(
                postgres_scenario.TITLE, postgres_scenario.CONTENT, postgres_scenario.TAGS, str(uuid.uuid4())
            )
            answer = held.client.write(
                write_to.address,
                CREATE_NOTE.path,
                bearer(token),
                request.SerializeToString(),
                CREATED_EVENT,
                WRITE_TIMEOUT_S,
            )
            made.reject(*write_problems(answer))
            clock_stamped += answer["clock_stamps"]
            max_backlog = max(max_backlog, answer["max_backlog_bytes"])
            behind += backlog_problems(answer)
            latencies = answer.pop("latencies_us")
            raw.append(answer | {"warm_up": index == 0, "latencies_us": latencies})
            if index == 0 or not latencies:
                continue
            summaries.append(delivery_summary(latencies))
            if answer["call_us"] is not None:
                creates_ms.append(answer["call_us"] / 1000)
            busy.append(busy_share(answer))
        path = context.raw_dir / f"streaming-fanout-{_slug(series)}-r{round_}.json"
        path.write_text(json.dumps(raw))
        made.files.append(path.name)
        if not summaries:
            made.reject("no write reached any stream")
            return made
        made.values = median_of_writes(summaries) | {
            "streams": float(context.watch_streams),
            "create_ms": statistics.median(creates_ms) if creates_ms else float("nan"),
            "load_busy_pct": max(busy) * 100,
            "client_backlog_kb": max_backlog / 1024,
        }
        if clock_stamped:
            made.warnings.append(
                f"{clock_stamped} socket reads came without a kernel timestamp: stamped when the client read them"
            )
        made.reject(*sorted(set(behind))[:1], environmental=True)
        return made

    return context.guarded(NAME, series, round_, None, measure)


def _watch_request(context: Context) -> bytes:
    return context.stubs.notes_pb2.WatchNotesRequest(start_from_now=True).SerializeToString()


def _measured(context: Context, series: str, round_: int, measure: Callable[[], Run]) -> Run:
    return context.guarded(NAME, series, round_, None, measure)


def _watch_sqlite(context: Context, round_: int) -> list[Run]:
    """Memory of the WatchNotes streams on a fresh notes process, then the fan-out of writes."""
    runs: list[Run] = []
    with context.process_group() as group:
        held: list[_Held] = []
        started: list[tuple[Server, str]] = []

        def memory() -> Run:
            notes = context.notesuite.start(
                group, "notes", name=f"notes-watch-r{round_}", extra_args=_notes_args(context.watch_streams)
            )
            token = _token(context)
            body = _watch_request(context)
            held.append(_hold(context, WATCH_SQLITE, round_, notes, WATCH_NOTES.path, bearer(token), body))
            _check_gauge(held[0].run, notes)
            started.append((notes, token))
            return held[0].run

        try:
            runs.append(_measured(context, WATCH_SQLITE, round_, memory))
            if started:
                notes, token = started[0]
                runs.append(_fanout(context, held[0], FANOUT_SQLITE, round_, notes, token))
            else:
                runs.append(_not_made(context, FANOUT_SQLITE, round_, "the streams could not be opened"))
        finally:
            for each in held:
                each.client.close()
    return runs


def _health_watch(context: Context, round_: int) -> Run:
    def measure() -> Run:
        with context.process_group() as group:
            notes = context.notesuite.start(group, "notes", name=f"notes-health-watch-r{round_}")
            held = _hold(context, HEALTH_WATCH, round_, notes, HEALTH_WATCH_PATH, (), b"")
            held.client.close()
            return held.run

    return _measured(context, HEALTH_WATCH, round_, measure)


def _peer_watch(context: Context, kind, round_: int) -> Run:
    series = PEER_WATCH[kind.name]

    def measure() -> Run:
        with context.process_group() as group:
            server = context.peers.start(group, kind)
            held = _hold(context, series, round_, server, HEALTH_WATCH_PATH, (), b"")
            held.client.close()
            return held.run

    return _measured(context, series, round_, measure)


def _watch_postgres(context: Context, postgres: pg.Postgres, round_: int) -> list[Run]:
    """Two notes replicas on one fresh database: the streams on the second, writes through
    the first (across) and through the second (same replica), alternately."""
    runs: list[Run] = []
    url = postgres.create_database(f"watch_r{round_}")
    try:
        with context.process_group() as group:
            held: list[_Held] = []
            started: list = []

            def memory() -> Run:
                writer = context.notesuite.start(group, "notes", name=f"notes-pg-writer-r{round_}", database_url=url)
                watched = context.notesuite.start(
                    group,
                    "notes",
                    name=f"notes-pg-watched-r{round_}",
                    database_url=url,
                    extra_args=_notes_args(context.watch_streams),
                )
                token = _token(context)
                body = _watch_request(context)
                held.append(_hold(context, WATCH_POSTGRES, round_, watched, WATCH_NOTES.path, bearer(token), body))
                _check_gauge(held[0].run, watched)
                started.append((writer, watched, token))
                return held[0].run

            try:
                runs.append(_measured(context, WATCH_POSTGRES, round_, memory))
                if started:
                    writer, watched, token = started[0]
                    runs.append(_fanout(context, held[0], FANOUT_ACROSS, round_, writer, token))
                    runs.append(_fanout(context, held[0], FANOUT_SAME, round_, watched, token))
                else:
                    for series in (FANOUT_ACROSS, FANOUT_SAME):
                        runs.append(_not_made(context, series, round_, "the streams could not be opened"))
            finally:
                for each in held:
                    each.client.close()
    finally:
        postgres.drop_database(url)
    return runs


def _not_made(context: Context, series: str, round_: int, why: str) -> Run:
    made = Run(NAME, series, round_, None)
    made.reject(why)
    context.progress.report(made)
    return made


def _token(context: Context) -> str:
    return tokens.user_token(context.notesuite.keys_dir / "jwt-private.pem")


# --- Imports ------------------------------------------------------------------------------------


def _import_rows(context: Context) -> list[imports.Row]:
    return imports.rows(context.import_notes, IMPORT_TITLE, postgres_scenario.CONTENT, postgres_scenario.TAGS)


def _import_requests(context: Context, rows: list[imports.Row]) -> list[bytes]:
    notes_pb2 = context.stubs.notes_pb2
    return [
        notes_pb2.ImportNotesRequest(
            note=notes_pb2.Note(title=row.title, content=row.content, tags=list(row.tags)),
            request_id=row.request_id,
        ).SerializeToString()
        for row in rows
    ]


def _import(context: Context, series: str, round_: int, database_url: str | None) -> Run:
    """One ImportNotes of context.import_notes notes into a fresh notes process (and owner)."""

    def measure() -> Run:
        made = Run(NAME, series, round_, None, verified_by="the import's summary: every note created, no error")
        rows = _import_rows(context)
        requests = _import_requests(context, rows)
        with context.process_group() as group:
            notes = context.notesuite.start(
                group, "notes", name=f"notes-import-{_slug(series)}-r{round_}", database_url=database_url
            )
            result = imports.import_notes(context.stubs, notes.address, _token(context), requests)
            if notes.process.exited():
                made.reject("notes exited during the import")
        made.reject(*result.problems(len(rows)))
        made.reject(*result.environmental_problems(), environmental=True)
        made.values = {
            "notes": float(len(rows)),
            "notes_per_s": result.notes_per_s,
            "seconds": result.seconds,
            "load_cpu_us_per_note": result.load_cpu_s * 1e6 / max(result.created, 1),
        }
        return made

    return _measured(context, series, round_, measure)


def _bulk(context: Context, series: str, round_: int, insert: Callable[[list[imports.Row], str], float]) -> Run:
    def measure() -> Run:
        made = Run(NAME, series, round_, None, verified_by="the table holds every row afterwards")
        rows = _import_rows(context)
        seconds = insert(rows, str(uuid.uuid4()))
        made.values = {"notes": float(len(rows)), "notes_per_s": len(rows) / seconds, "seconds": seconds}
        return made

    return _measured(context, series, round_, measure)


def _import_sqlite(context: Context, round_: int) -> list[Run]:
    schema = imports.sqlite_schema(context.repo_root)

    def sqlite_insert(everything: bool) -> Callable[[list[imports.Row], str], float]:
        def insert(rows: list[imports.Row], owner: str) -> float:
            path = context.work_dir / f"bulk-{uuid.uuid4().hex[:8]}.db"
            try:
                return imports.sqlite_bulk_insert(schema, path, owner, rows, everything)
            finally:
                for leftover in path.parent.glob(path.name + "*"):
                    leftover.unlink()

        return insert

    return [
        _import(context, IMPORT_SQLITE, round_, None),
        _bulk(context, SQLITE_BULK, round_, sqlite_insert(everything=False)),
        _bulk(context, SQLITE_BULK_ALL, round_, sqlite_insert(everything=True)),
    ]


def _import_postgres(context: Context, postgres: pg.Postgres, round_: int) -> list[Run]:
    schema = pg.migration_sql(context.repo_root)

    def psql_insert(script: Callable[[str, list[imports.Row]], str]) -> Callable[[list[imports.Row], str], float]:
        def insert(rows: list[imports.Row], owner: str) -> float:
            url = postgres.create_database(f"bulk_r{round_}")
            try:
                postgres.sql(url, schema)
                seconds = imports.psql_seconds(postgres.sql(url, script(owner, rows)))
                count = int(postgres.scalar(url, "SELECT count(*) FROM notes"))
                if count != len(rows):
                    raise RuntimeError(f"the table holds {count} notes after inserting {len(rows)}")
                return seconds
            finally:
                postgres.drop_database(url)

        return insert

    def copy(owner: str, rows: list[imports.Row]) -> str:
        return imports.timed_script(imports.copy_script(owner, rows))

    url = postgres.create_database(f"import_r{round_}")
    try:
        runs = [_import(context, IMPORT_POSTGRES, round_, url)]
    finally:
        postgres.drop_database(url)
    runs.append(_bulk(context, PG_MULTI_ROW, round_, psql_insert(imports.multi_row_insert_script)))
    runs.append(_bulk(context, PG_COPY, round_, psql_insert(copy)))
    runs.append(_bulk(context, PG_MULTI_ROW_ALL, round_, psql_insert(imports.everything_script)))
    return runs


def _slug(*parts: object) -> str:
    text = "-".join(str(part) for part in parts)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
