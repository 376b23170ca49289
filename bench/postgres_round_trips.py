"""Where a CreateNote's database time goes: pgbench variants between the single-row INSERT and
the store's whole transaction, on the tables of the notes migration, in a fresh database of
their own (dropped afterwards), interleaved by round:

  single-row         1 round trip, the note row
  rows               1 round trip, the note row + its 2 tag rows + the request record (CTEs)
  one statement      1 round trip, the owner revision upsert too (all of CreateNote's writes)
  merged lookup      4 round trips: BEGIN; revision upsert and request_id lookup in one
                     statement; the INSERT with CTEs; COMMIT
  store              5 round trips: what the store sends today (pgbench.TRANSACTION)
  store + 2 pings    7 round trips: sqlx's pool pings a connection when it is acquired and when
                     it is released (a Sync; `SELECT 1` here, a little dearer)

Also the server's WAL flushes (pg_stat_wal.wal_sync, cluster-wide) per transaction. pgbench is
pinned to the load core; PostgreSQL is not. Needs psql and pgbench.

    .venv/bin/python bench/postgres_round_trips.py [--rounds 2] [--duration 8] [--clients 8 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notesuite_bench import pg, pgbench
from notesuite_bench.scenarios import postgres

OWNER, UUID7, NOW = pgbench.OWNER, pgbench.UUID7, pgbench.NOW_MICROS
REQUEST_ID = pgbench.REQUEST_ID
COLUMNS = "(id, owner_id, title, content, tags, revision, create_time, update_time)"

ROWS = f"""\
\\set request random(1, 9000000000000000000)
WITH v AS (SELECT {UUID7} AS id, {NOW} AS now), note AS (INSERT INTO notes {COLUMNS} SELECT v.id, {OWNER}, :title, :content, :tags::text[], 1, v.now, v.now FROM v), tags AS (INSERT INTO note_tags (owner_id, tag, note_id) SELECT {OWNER}, tag, v.id FROM v, unnest(:tags::text[]) AS tag) INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) SELECT {OWNER}, {REQUEST_ID}, :fingerprint::bytea, v.id, v.now FROM v;
"""  # noqa: E501

ONE_STATEMENT = f"""\
\\set request random(1, 9000000000000000000)
WITH rev AS (INSERT INTO owner_revisions AS r (owner_id, revision) VALUES ({OWNER}, 1) ON CONFLICT (owner_id) DO UPDATE SET revision = r.revision + 1 RETURNING revision), v AS (SELECT {UUID7} AS id, {NOW} AS now, rev.revision FROM rev), note AS (INSERT INTO notes {COLUMNS} SELECT v.id, {OWNER}, :title, :content, :tags::text[], v.revision, v.now, v.now FROM v), tags AS (INSERT INTO note_tags (owner_id, tag, note_id) SELECT {OWNER}, tag, v.id FROM v, unnest(:tags::text[]) AS tag) INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) SELECT {OWNER}, {REQUEST_ID}, :fingerprint::bytea, v.id, v.now FROM v;
"""  # noqa: E501

MERGED_LOOKUP = pgbench.TRANSACTION.replace(
    f"RETURNING revision, {UUID7} AS note_id, {NOW} AS now\n\\gset\n"
    f"SELECT fingerprint, note_id FROM create_requests WHERE owner_id = {OWNER} AND request_id = {REQUEST_ID};\n",
    f"RETURNING revision, {UUID7} AS note_id, {NOW} AS now, "
    f"(SELECT fingerprint FROM create_requests WHERE owner_id = {OWNER} AND request_id = {REQUEST_ID}) AS earlier\n"
    "\\gset\n",
)
WITH_PINGS = "SELECT 1;\n" + pgbench.TRANSACTION + "SELECT 1;\n"

VARIANTS = {
    "single-row (1 round trip)": pgbench.SINGLE_ROW,
    "rows: note + tags + request (1)": ROWS,
    "one statement, revision too (1)": ONE_STATEMENT,
    "merged upsert + lookup (4)": MERGED_LOOKUP,
    "store's transaction (5)": pgbench.TRANSACTION,
    "store + 2 pings (7)": WITH_PINGS,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=pg.default_server())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    if MERGED_LOOKUP == pgbench.TRANSACTION:
        raise SystemExit("pgbench.TRANSACTION changed: update MERGED_LOOKUP")
    server = pg.Postgres(args.postgres)
    print(f"PostgreSQL {server.check()}", flush=True)
    variables = {
        "title": postgres.TITLE,
        "content": postgres.CONTENT,
        "tags": "{" + ",".join(postgres.TAGS) + "}",
        "fingerprint": postgres.FINGERPRINT,
    }
    work = Path(tempfile.mkdtemp(prefix="notesuite-round-trips-"))
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with server.session():
        url = server.create_database("roundtrips")
        server.sql(url, pg.migration_sql(Path(__file__).resolve().parents[1]))
        for round_ in range(1, args.rounds + 1):
            for clients in args.clients:
                for name, script in VARIANTS.items():
                    script_file = work / "script.sql"
                    script_file.write_text(script)
                    pgbench.run(url, script_file, clients, 2, variables)  # warm-up
                    syncs_before = _wal_syncs(server)
                    result = pgbench.run(url, script_file, clients, args.duration, variables)
                    time.sleep(0.2)
                    syncs = (_wal_syncs(server) - syncs_before) / max(result.processed, 1)
                    if result.problems():
                        raise SystemExit(f"{name} @{clients}: {result.problems()}")
                    results.setdefault((name, clients), []).append((result.tps, syncs))
                    print(f"r{round_} @{clients:<3} {name:34} {result.tps:8.0f} tps  {syncs:.2f} WAL flushes/xact")
    print()
    columns = (f"tps @{c} | × single-row @{c} | WAL flushes/xact @{c}" for c in args.clients)
    print("| variant | " + " | ".join(columns) + " |")
    print("|---|" + "---|---|---|" * len(args.clients))
    for name in VARIANTS:
        cells = []
        for clients in args.clients:
            tps = statistics.median(t for t, _ in results[(name, clients)])
            base = statistics.median(t for t, _ in results[(next(iter(VARIANTS)), clients)])
            syncs = statistics.median(s for _, s in results[(name, clients)])
            cells += [f"{tps:.0f}", f"{tps / base:.2f}", f"{syncs:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


def _wal_syncs(server: pg.Postgres) -> int:
    return int(server.scalar(server.server, "SELECT wal_sync FROM pg_stat_wal"))


if __name__ == "__main__":
    sys.exit(main())
