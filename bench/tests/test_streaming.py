"""The streaming scenario's parts that need no notesuite: the raw HTTP/2 watch client (against a
grpcio server), its statistics, the harness's own tokens, the bulk-insert baselines, and the
budgets and report built from known runs."""

from __future__ import annotations

import json
import operator
import shutil
import sqlite3
import struct
import subprocess
import threading
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import hpack
import pytest

from helpers import run
from notesuite_bench import budgets, imports, report, tokens, watch_load
from notesuite_bench.budgets import FAIL, INVALID, NOT_RUN, PASS
from notesuite_bench.measure import NotRun
from notesuite_bench.scenarios import streaming
from notesuite_bench.watch_load import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIORITY,
    frame,
    grpc_message,
    split_frames,
    split_messages,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# --- HTTP/2 and gRPC framing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix_bits", "encoded"),
    [
        # RFC 7541 C.1.1-C.1.3.
        (10, 5, b"\x0a"),
        (1337, 5, b"\x1f\x9a\x0a"),
        (42, 8, b"\x2a"),
        (127, 7, b"\x7f\x00"),
    ],
)
def test_hpack_integers_follow_rfc_7541(value, prefix_bits, encoded):
    assert watch_load.hpack_integer(value, prefix_bits) == encoded


def test_a_header_block_decodes_to_its_headers_and_leaves_the_dynamic_table_empty():
    headers = [(":method", "POST"), (":path", "/a.B/C"), ("authorization", "Bearer " + "x" * 300)]
    decoder = hpack.Decoder()
    block = watch_load.encode_header_block(headers)
    assert decoder.decode(block) == headers
    # The same bytes again decode the same: nothing was indexed.
    assert decoder.decode(block) == headers
    assert len(decoder.header_table.dynamic_entries) == 0


def test_frames_are_split_whole_and_a_partial_one_waits_for_its_bytes():
    stream = frame(DATA, END_STREAM, 3, b"hello") + frame(HEADERS, END_HEADERS, 5, b"\x88")
    partial = frame(DATA, 0, 7, b"x" * 100)[:50]
    frames, used = split_frames(stream + partial)
    assert frames == [(DATA, END_STREAM, 3, b"hello"), (HEADERS, END_HEADERS, 5, b"\x88")]
    assert used == len(stream)
    assert split_frames(partial) == ([], 0)


def test_a_frame_length_over_16_bits_is_read_whole():
    payload = b"y" * 70_000
    frames, used = split_frames(frame(DATA, 0, 1, payload))
    assert frames == [(DATA, 0, 1, payload)] and used == 9 + 70_000


def test_padding_and_priority_are_stripped():
    assert watch_load.unpadded(PADDED, b"\x02abc\x00\x00", DATA) == b"abc"
    assert watch_load.unpadded(PRIORITY, b"\x00\x00\x00\x01\x10block", HEADERS) == b"block"
    assert watch_load.unpadded(0, b"plain", DATA) == b"plain"


def test_grpc_messages_are_split_across_data_frames():
    two = grpc_message(b"\x08\x01abc") + grpc_message(b"")
    messages, rest = split_messages(two + grpc_message(b"\x08\x04")[:3])
    assert messages == [b"\x08\x01abc", b""]
    assert rest == grpc_message(b"\x08\x04")[:3]
    assert split_messages(rest + grpc_message(b"\x08\x04")[3:]) == ([b"\x08\x04"], b"")


def test_settings_are_read_as_identifier_value_pairs():
    payload = struct.pack(">HIHI", 3, 1024, 4, 65_535)
    assert watch_load.settings_values(payload) == {3: 1024, 4: 65_535}


# --- The watch client against a real gRPC server -----------------------------------------------


class _FanOutServer:
    """A grpcio server with a server-streaming Watch (one b"\\x08\\x04" message at once, then
    one b"\\x08\\x01" per Write) and a unary Write: the shape of WatchNotes and CreateNote."""

    def __init__(self, max_streams: int = 100):
        self.lock = threading.Condition()
        self.writes = 0
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64),
            options=[("grpc.max_concurrent_streams", max_streams)],
        )
        handlers = {
            "Watch": grpc.unary_stream_rpc_method_handler(self._watch),
            "Write": grpc.unary_unary_rpc_method_handler(self._write),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Fan", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _watch(self, request: bytes, context):
        assert dict(context.invocation_metadata())["authorization"] == "Bearer t"
        seen = [self.writes]
        yield b"\x08\x04"
        while context.is_active():
            with self.lock:
                self.lock.wait_for(lambda: self.writes > seen[0], timeout=0.2)
                if self.writes > seen[0]:
                    seen[0] = self.writes
                    yield b"\x08\x01" + request

    def _write(self, request: bytes, context):
        with self.lock:
            self.writes += 1
            self.lock.notify_all()
        return b"\x0a\x00"

    def stop(self):
        self.server.stop(grace=None)


def test_the_watch_client_holds_streams_and_times_a_write_on_every_one():
    server = _FanOutServer()
    client = watch_load.Client()
    try:
        address = f"127.0.0.1:{server.port}"
        connected = client.connect(address, 2, timeout_s=10)
        assert connected == {"connections": 2, "max_streams": 100}
        opened = client.open("/test.Fan/Watch", [["authorization", "Bearer t"]], b"z", 30, window=8, timeout_s=20)
        assert (opened["opened"], opened["ended"], opened["no_first_message"]) == (30, {}, 0)
        assert {connection.open_streams for connection in client.watchers} == {15}
        answer = client.write(address, "/test.Fan/Write", [], b"", b"\x08\x01z", timeout_s=20)
        assert (answer["streams"], answer["missing"], answer["ended"], answer["call_status"]) == (30, 0, {}, "0")
        assert len(answer["latencies_us"]) == 30 and all(value > 0 for value in answer["latencies_us"])
        assert answer["call_us"] is not None and answer["window_s"] > 0
        assert answer["spread_s"] >= 0 and answer["spread_cpu_s"] >= 0
        assert answer["clock_stamps"] == 0 and answer["kernel_stamps"] > 0
        assert answer["receive_buffer_bytes"] > 0 and answer["max_backlog_bytes"] >= 0
        # A second write is timed afresh on every stream.
        assert client.write(address, "/test.Fan/Write", [], b"", b"\x08\x01z", timeout_s=20)["missing"] == 0
    finally:
        client.close()
        server.stop()


def test_the_watch_client_refuses_more_streams_than_the_server_allows_per_connection():
    server = _FanOutServer(max_streams=5)
    client = watch_load.Client()
    try:
        client.connect(f"127.0.0.1:{server.port}", 1, timeout_s=10)
        with pytest.raises(RuntimeError, match="allows 5 per connection"):
            client.open("/test.Fan/Watch", [["authorization", "Bearer t"]], b"", 6, window=8, timeout_s=20)
    finally:
        client.close()
        server.stop()


def test_a_stream_the_server_ends_is_counted_by_its_status():
    server = _FanOutServer()
    client = watch_load.Client()
    try:
        client.connect(f"127.0.0.1:{server.port}", 1, timeout_s=10)
        # No such method: the server answers UNIMPLEMENTED (12) at once, trailers only.
        opened = client.open("/test.Fan/Nothing", [], b"", 3, window=8, timeout_s=20)
        assert (opened["opened"], opened["ended"]) == (0, {"12": 3})
        assert streaming.open_problems(opened, 3) == [
            "0 of 3 streams opened",
            "streams ended while opening (grpc-status: count): {'12': 3}",
        ]
    finally:
        client.close()
        server.stop()


def test_the_client_process_answers_a_command_per_line():
    out = _Lines()
    watch_load.serve([json.dumps({"command": "jump"}), json.dumps({"command": "close"})], out)
    assert [json.loads(line) for line in out.lines] == [{"error": "unknown command 'jump'"}, {"closed": 0}]


class _Lines:
    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


# --- Statistics ---------------------------------------------------------------------------------


def test_kb_per_stream_is_the_whole_growth_over_all_streams_and_the_median_step():
    total, median_step = streaming.memory_per_stream([1000, 1100, 1180, 1400], [10, 10, 10])
    assert total == pytest.approx(400 / 30)
    assert median_step == 10.0


def test_kb_per_stream_needs_a_reading_before_and_after_every_step():
    with pytest.raises(ValueError, match="RSS readings"):
        streaming.memory_per_stream([1000, 1100], [10, 10])


def test_delivery_is_summarised_by_nearest_rank_in_ms():
    latencies = list(range(1000, 101_000, 1000))  # 100 streams: 1 ms .. 100 ms
    assert streaming.delivery_summary(latencies) == {"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert streaming.delivery_summary([7000]) == {"p50_ms": 7.0, "p99_ms": 7.0, "max_ms": 7.0}


def test_writes_are_combined_by_their_median_with_the_worst_kept():
    summaries = [
        {"p50_ms": 5.0, "p99_ms": 9.0, "max_ms": 10.0},
        {"p50_ms": 6.0, "p99_ms": 30.0, "max_ms": 31.0},
        {"p50_ms": 4.0, "p99_ms": 8.0, "max_ms": 12.0},
    ]
    assert streaming.median_of_writes(summaries) == {
        "p50_ms": 5.0,
        "p99_ms": 9.0,
        "max_ms": 12.0,
        "worst_p99_ms": 30.0,
        "worst_max_ms": 31.0,
    }


def test_a_write_that_missed_streams_or_failed_says_so():
    answer = {"call_status": "14", "missing": 2, "streams": 10, "ended": {"RST 8": 2}}
    assert streaming.write_problems(answer) == [
        "CreateNote ended with grpc-status 14",
        "2 of 10 streams did not get the change",
        "streams ended during the write (grpc-status: count): {'RST 8': 2}",
    ]
    assert streaming.write_problems({"call_status": "0", "missing": 0, "streams": 10, "ended": {}}) == []


def test_a_client_whose_sockets_filled_up_may_have_slowed_the_server():
    answer = {"max_backlog_bytes": 512 * 1024, "receive_buffer_bytes": 1024 * 1024}
    (problem,) = streaming.backlog_problems(answer)
    assert problem == (
        "the watch client fell behind: 512 KiB waited in one socket (receive buffer 1024 KiB), "
        "so TCP may have held the server back"
    )
    assert streaming.backlog_problems(answer | {"max_backlog_bytes": 511 * 1024}) == []


def test_the_watch_client_busy_share_is_its_cpu_from_the_first_arrival_to_the_last():
    assert streaming.busy_share({"spread_cpu_s": 0.045, "spread_s": 0.05}) == pytest.approx(0.9)
    assert streaming.busy_share({"spread_cpu_s": 0.06, "spread_s": 0.05}) == 1.0
    assert streaming.busy_share({"spread_cpu_s": 0.0, "spread_s": 0.0}) == 0.0


def test_streams_are_spread_over_connections_under_notes_per_connection_limit():
    assert streaming.connections_for(10_000) == 100
    assert streaming.connections_for(300) == 3
    assert streaming.connections_for(101) == 2
    assert streaming.connections_for(1) == 1


def test_planned_runs_count_the_peers_only_with_peers():
    assert streaming.planned_runs(3, with_peers=True) - streaming.planned_runs(3, with_peers=False) == 6


# --- Tokens -------------------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_signing_input_is_the_gateways_header_and_claims():
    header, claims = tokens.signing_input("user-1", 1_700_000_000, 60).split(".")
    assert json.loads(_b64decode(header)) == {"typ": "JWT", "alg": "EdDSA"}
    assert json.loads(_b64decode(claims)) == {
        "iss": "notesuite-gateway",
        "aud": "notesuite",
        "sub": "user-1",
        "iat": 1_700_000_000,
        "exp": 1_700_000_060,
    }
    assert "=" not in header + claims


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_a_user_token_carries_an_ed25519_signature_openssl_verifies(tmp_path):
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", private], check=True)
    subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True)
    token = tokens.user_token(private, "user-2")
    unsigned, signature = token.rsplit(".", 1)
    message, signature_file = tmp_path / "message", tmp_path / "signature"
    message.write_bytes(unsigned.encode())
    signature_file.write_bytes(_b64decode(signature))
    verify = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin"]
    verified = subprocess.run(
        [*verify, "-in", message, "-sigfile", signature_file], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(_b64decode(unsigned.split(".")[1]))["sub"] == "user-2"


# --- Bulk-insert baselines ------------------------------------------------------------------------


def test_psql_timing_lines_are_summed_in_seconds():
    output = "Time: 8.839 ms\nINSERT 0 2\nTime: 1234.500 ms (00:01.235)\n4\nTime: 0.661 ms\n"
    assert imports.psql_seconds(output) == pytest.approx(1.244)
    with pytest.raises(RuntimeError, match="no timing"):
        imports.psql_seconds("INSERT 0 1\n")


def test_ids_are_time_ordered_uuids_in_row_order():
    rows = imports.rows(600, "t", "c", ("work",))
    ids = [row.id for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == 600
    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert [row.revision for row in rows[:3]] == [1, 2, 3] and rows[5].title == "t 000005"


def test_the_insert_scripts_write_the_rows_in_batches_and_copy_escapes_text():
    rows = imports.rows(300, "it's", "a\tb", ("work", "planning"))
    script = imports.multi_row_insert_script("owner", rows)
    assert script.startswith("\\timing on\n") and script.endswith("\\timing off\n")
    assert script.count("INSERT INTO notes") == 2  # 256 + 44
    assert "'it''s 000000'" in script and "'{work,planning}'" in script
    copy = imports.copy_script("owner", rows[:1])
    assert copy.splitlines()[1].split("\t")[2:5] == ["it's 000000", "a\\tb", "{work,planning}"]
    assert copy.endswith("\\.\n")


def test_the_sqlite_baseline_fills_the_notes_table_of_the_real_schema(tmp_path):
    rows = imports.rows(600, "note", "x" * 100, ("work", "planning"))
    seconds = imports.sqlite_bulk_insert(imports.sqlite_schema(REPO_ROOT), tmp_path / "bulk.db", "owner", rows)
    assert seconds > 0
    with sqlite3.connect(tmp_path / "bulk.db") as connection:
        assert connection.execute("SELECT count(*), min(tags) FROM notes").fetchone() == (600, "work,planning")
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_import_result_checks_every_note_was_created_and_who_was_busy():
    clean = imports.ImportResult(seconds=2.0, created=100, already_present=0, error_count=0, load_cpu_s=0.5)
    assert clean.notes_per_s == 50.0 and clean.problems(100) == [] and clean.environmental_problems() == []
    short = imports.ImportResult(seconds=2.0, created=90, already_present=4, error_count=6, load_cpu_s=1.9)
    assert short.problems(100) == [
        "ImportNotes created 90 of 100 notes",
        "ImportNotes found 4 items already present in a fresh import",
        "ImportNotes refused 6 items",
    ]
    assert short.environmental_problems() == ["the import client kept its core 95% busy: the rate may be its own limit"]


# --- Budgets and report ---------------------------------------------------------------------------


def _streaming_runs(kb: float = 8.0, p99: float = 50.0, imported: float = 900.0, bulk: float = 1000.0) -> list:
    runs = [
        run(streaming.NAME, streaming.WATCH_SQLITE, streams=10_000.0, kb_per_stream=kb),
        run(streaming.NAME, streaming.WATCH_POSTGRES, streams=10_000.0, kb_per_stream=kb),
        run(streaming.NAME, streaming.PEER_WATCH["grpc-go"], streams=10_000.0, kb_per_stream=9.0),
    ]
    for series in streaming.FANOUT_SERIES:
        runs.append(run(streaming.NAME, series, streams=10_000.0, p99_ms=p99, p50_ms=p99 / 2, max_ms=p99 * 1.1))
    for series in (streaming.IMPORT_SQLITE, streaming.IMPORT_POSTGRES):
        runs.append(run(streaming.NAME, series, notes=20_000.0, notes_per_s=imported))
    for series in (streaming.SQLITE_BULK, streaming.PG_MULTI_ROW, streaming.PG_COPY):
        runs.append(run(streaming.NAME, series, notes=20_000.0, notes_per_s=bulk))
    return runs


def _judged(runs: list, not_run: tuple = (), with_peers: bool = True) -> dict[tuple[str, str], budgets.Budget]:
    judged = budgets.evaluate(runs, with_peers, {streaming.NAME}, list(not_run))
    return {(b.budget, b.subject): b for b in judged if "stream" in b.budget or "ImportNotes" in b.budget}


def test_the_streaming_budgets_pass_at_their_bounds():
    judged = _judged(_streaming_runs(kb=10.0, p99=100.0, imported=801.0))
    assert {b.verdict for b in judged.values()} == {PASS}
    memory = judged[(streaming.MEMORY_BUDGET, "notes WatchNotes on SQLite (10,000 streams)")]
    assert memory.measured == "10.0 KB; grpc-go Health/Watch 9.0 KB"
    subjects = {subject for _, subject in judged}
    assert "CreateNote → 10,000 watchers, PostgreSQL, across replicas" in subjects
    assert "ImportNotes (PostgreSQL) ÷ psql COPY" in subjects


def test_the_streaming_budgets_fail_past_their_bounds():
    judged = _judged(_streaming_runs(kb=10.1, p99=100.1, imported=799.0))
    assert {b.verdict for b in judged.values()} == {FAIL}


def test_parts_listed_as_not_run_are_judged_there_only():
    not_run = (
        NotRun(f"{streaming.NAME}: WatchNotes across two replicas", streaming.FANOUT_BUDGET, "no PostgreSQL"),
        NotRun(f"{streaming.NAME}: WatchNotes on PostgreSQL", streaming.MEMORY_BUDGET, "no PostgreSQL"),
        NotRun(f"{streaming.NAME}: ImportNotes on PostgreSQL", streaming.IMPORT_BUDGET, "no PostgreSQL"),
    )
    runs = [r for r in _streaming_runs() if r.series not in streaming.POSTGRES_SERIES]
    judged = budgets.evaluate(runs, False, {streaming.NAME}, list(not_run))
    budgets_of_streaming = (streaming.MEMORY_BUDGET, streaming.FANOUT_BUDGET, streaming.IMPORT_BUDGET)
    streaming_budgets = [b for b in judged if b.budget in budgets_of_streaming]
    assert sorted((b.subject, b.verdict) for b in streaming_budgets) == [
        ("CreateNote → 10,000 watchers, SQLite, same process", PASS),
        ("ImportNotes (SQLite) ÷ sqlite3 batched INSERT", PASS),
        ("notes WatchNotes on SQLite (10,000 streams)", PASS),
        (f"{streaming.NAME}: ImportNotes on PostgreSQL", NOT_RUN),
        (f"{streaming.NAME}: WatchNotes across two replicas", NOT_RUN),
        (f"{streaming.NAME}: WatchNotes on PostgreSQL", NOT_RUN),
    ]


def test_without_peers_the_memory_budget_says_there_is_no_grpc_go_to_compare_with():
    runs = [r for r in _streaming_runs() if r.series not in streaming.PEER_WATCH.values()]
    memory = _judged(runs, with_peers=False)[(streaming.MEMORY_BUDGET, "notes WatchNotes on SQLite (10,000 streams)")]
    assert memory.measured == "8.0 KB; grpc-go: peers skipped"


def test_an_invalid_fanout_run_makes_its_budget_invalid_and_not_chosen_is_not_run():
    runs = _streaming_runs()
    next(r for r in runs if r.series == streaming.FANOUT_SQLITE).reject("3 of 10000 streams did not get the change")
    judged = _judged(runs)
    assert judged[(streaming.FANOUT_BUDGET, "CreateNote → 10,000 watchers, SQLite, same process")].verdict == INVALID
    not_chosen = budgets.evaluate([], False, {"health"}, [])
    assert {b.verdict for b in not_chosen if b.budget.startswith("ImportNotes")} == {NOT_RUN}


def test_the_report_has_a_streaming_section_and_says_when_peers_were_skipped():
    header = report.Header("t", "c", {}, {})
    runs = [r for r in _streaming_runs() if r.series not in streaming.PEER_WATCH.values()]
    text = report.markdown(header, runs, [], [], [streaming.NAME])
    assert "## Streaming: WatchNotes and ImportNotes" in text
    assert "| notes WatchNotes (SQLite) | 10000 | 8.00 |" in text
    assert "| SQLite, same process | 10000 | 25.0 | 50.0 | 55.0 |" in text
    assert "0.90 × psql multi-row INSERT; 0.90 × psql COPY" in text
    assert "no grpc-go Health/Watch stream to compare with" in text
    with_peers = report.markdown(header, _streaming_runs(), [], [], [streaming.NAME])
    assert "| grpc-go Health/Watch | 10000 | 9.00 |" in with_peers
    assert "no grpc-go Health/Watch stream" not in with_peers


def test_the_limits_are_the_specs():
    assert budgets.Limit(operator.le, 10, "KB").judge("b", "s", None).verdict == INVALID


def test_the_sqlite_baseline_with_everything_writes_every_row_the_import_writes(tmp_path):
    rows = imports.rows(600, "note", "x" * 100, ("work", "planning"))
    schema = imports.sqlite_schema(REPO_ROOT)
    imports.sqlite_bulk_insert(schema, tmp_path / "all.db", "owner", rows, everything=True)
    with sqlite3.connect(tmp_path / "all.db") as connection:
        counts = [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES]
        assert counts == [600, 1200, 600, 600]
        assert connection.execute("SELECT revision FROM owner_revisions").fetchall() == [(600,)]
        assert connection.execute("SELECT length(fingerprint) FROM create_requests LIMIT 1").fetchone() == (32,)


TABLES = ("notes", "note_tags", "note_changes", "create_requests")


def test_the_postgres_script_with_everything_writes_each_batch_in_one_transaction():
    rows = imports.rows(300, "note", "text", ("work", "planning"))
    script = imports.everything_script("owner", rows)
    assert script.count("BEGIN;") == script.count("COMMIT;") == 2
    for table in TABLES:
        assert script.count(f"INSERT INTO {table} ") == 2
    assert f"'\\x{rows[0].fingerprint.hex()}'" in script
    assert "ON CONFLICT (owner_id) DO UPDATE SET revision = r.revision + 44;" in script
