"""The postgres scenario's parts that need no server: its budget, pgbench's output, the gRPC
driver's request template and verdicts, the CPU accounting, and the store query it EXPLAINs."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run
from notesuite_bench import budgets, grpc_load, pg, pgbench, processes, report
from notesuite_bench.budgets import FAIL, INVALID, NOT_RUN, PASS
from notesuite_bench.grpc_load import PLACEHOLDER_REQUEST_ID, GrpcLoad, GrpcLoadResult
from notesuite_bench.scenarios import postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
BUDGET = "CreateNote on PostgreSQL ≥ 0.7×"


def _writes(create_rps: list[float], pgbench_rps: list[float]) -> list:
    runs = []
    for round_, (ours, theirs) in enumerate(zip(create_rps, pgbench_rps, strict=True), start=1):
        for load in postgres.WRITE_LOADS:
            runs.append(run(postgres.NAME, postgres.CREATE_NOTE, round_, load.in_flight, rps=ours))
            runs.append(run(postgres.NAME, postgres.PGBENCH_SINGLE_ROW, round_, load.in_flight, rps=theirs))
            runs.append(run(postgres.NAME, postgres.PGBENCH_TRANSACTION, round_, load.in_flight, rps=theirs))
    return runs


def _judge(runs: list) -> dict[str, budgets.Budget]:
    judged = budgets.evaluate(runs, False, {postgres.NAME}, [])
    return {b.subject: b for b in judged if b.budget.startswith(BUDGET)}


def test_the_write_budget_is_createnote_over_pgbench_single_row_at_each_concurrency():
    # 0.7 itself is not exact in binary: judged just above and just under it instead.
    at = _judge(_writes([701.0], [1000.0]))
    assert set(at) == {f"{postgres.CREATE_NOTE} @{load.in_flight}" for load in postgres.WRITE_LOADS}
    assert {b.verdict for b in at.values()} == {PASS}
    under = _judge(_writes([699.0], [1000.0]))
    assert {(b.verdict, b.measured) for b in under.values()} == {(FAIL, "0.70 ×")}


def test_the_write_budget_is_the_median_of_round_by_round_ratios():
    judged = _judge(_writes([600.0, 800.0, 900.0], [1000.0, 1000.0, 1000.0]))
    assert {(b.verdict, b.measured) for b in judged.values()} == {(PASS, "0.80 (0.60–0.90) ×")}


def test_an_invalid_pgbench_run_makes_the_write_budget_invalid():
    runs = _writes([800.0, 800.0], [1000.0, 1000.0])
    for made in runs:
        if made.series == postgres.PGBENCH_SINGLE_ROW and made.round == 2:
            made.reject("pgbench: 3 failed transactions")
    assert {b.verdict for b in _judge(runs).values()} == {INVALID}


def test_the_write_budget_is_not_run_when_the_scenario_is_not_selected():
    judged = budgets.evaluate([], False, {"health"}, [])
    assert {b.verdict for b in judged if b.budget.startswith(BUDGET)} == {NOT_RUN}


def test_the_report_has_a_postgres_section_with_the_plan():
    header = report.Header("t", "c", {}, {})
    runs = _writes([800.0], [1000.0])
    text = report.markdown(header, runs, [], [], [postgres.NAME], {postgres.NAME: "PLAN TEXT"})
    assert "## PostgreSQL: CreateNote vs pgbench" in text
    assert "| CreateNote via gateway | 8 | 800 |" in text
    assert "PLAN TEXT" in text


PGBENCH_OUTPUT = """\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/single-row.sql
scaling factor: 1
query mode: prepared
number of clients: 4
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 682
number of failed transactions: 3 (0.438%)
latency average = 9.983 ms
initial connection time = 310.701 ms
tps = 400.669977 (without initial connection time)
"""


def test_pgbench_output_gives_tps_processed_and_failed():
    assert pgbench.parse_output(PGBENCH_OUTPUT) == (400.669977, 682, 3)


def test_pgbench_output_without_a_rate_is_an_error():
    with pytest.raises(RuntimeError, match="tps"):
        pgbench.parse_output("pgbench: error: connection to server failed")


def test_pgbench_scripts_send_the_note_as_parameters_and_write_what_createnote_writes():
    single, transaction = pgbench.SCRIPTS["single-row"], pgbench.SCRIPTS["transaction"]
    for script in (single, transaction):
        assert ":title, :content, :tags::text[]" in script
    assert "BEGIN" not in single and "note_tags" not in single and "create_requests" not in single
    # The store's statements, in its order (crates/notes/src/store/postgres.rs).
    order = ["BEGIN;", "INSERT INTO owner_revisions", "\\gset", "SELECT fingerprint, note_id FROM create_requests"]
    order += ["INSERT INTO note_tags", "INSERT INTO create_requests", "COMMIT;"]
    positions = [transaction.index(part) for part in order]
    assert positions == sorted(positions)


def test_the_tag_page_query_is_read_from_the_store_source():
    query = postgres.tag_page_query(REPO_ROOT)
    # The page, joined to the owner's revision (ListNotes returns it for list-then-watch) and total.
    assert query.startswith("SELECT r.owner_revision, r.total, page.*")
    assert "SELECT id, owner_id, title, content, tags, revision, create_time, update_time FROM" in query
    assert "FROM note_tags t JOIN notes n ON n.id = t.note_id" in query
    assert "LIMIT $4" in query and "through - size < $5" in query
    assert "\n" not in query


def test_the_explain_prepares_the_query_with_the_first_page_arguments():
    sql = postgres.explain_sql("SELECT 1 WHERE $1 = $2 AND $3 IS NOT NULL AND $4 > $5", "o", "work", 51)
    assert "PREPARE tag_page(text, text, uuid, bigint, bigint) AS SELECT 1" in sql
    assert (
        "EXPLAIN (ANALYZE, BUFFERS) EXECUTE tag_page('o', 'work', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 51, 1048576)"
        in sql
    )
    assert "force_generic_plan" in sql


def test_a_request_template_gets_a_new_request_id_of_the_same_length():
    template = b"\x0a\x05hello\x12\x24" + PLACEHOLDER_REQUEST_ID.encode()
    request_id = "0b5b1c1e-3d2f-4c8e-9a47-1f2e3d4c5b6a"
    assert grpc_load.with_request_id(template, request_id) == b"\x0a\x05hello\x12\x24" + request_id.encode()
    with pytest.raises(ValueError, match="encoding"):
        grpc_load.with_request_id(template, "short")


def test_a_template_without_exactly_one_placeholder_is_refused(tmp_path):
    for template in (b"no id", PLACEHOLDER_REQUEST_ID.encode() * 2):
        with pytest.raises(ValueError, match="exactly once"):
            GrpcLoad("127.0.0.1:1", "/s/M", template, ("t",), 1, 1, tmp_path)


def _result(**overrides) -> GrpcLoadResult:
    fields = {
        "requests_per_s": 100.0,
        "elapsed_s": 10.0,
        "started": 1000,
        "succeeded": 1000,
        "failed": {},
        "load_cpu_s": 5.0,
        "machine_busy_s": 15.0,
        "cores": 2,
    }
    return GrpcLoadResult(**(fields | overrides))


def test_driver_failures_invalidate_the_run():
    assert _result().problems() == []
    failed = _result(succeeded=990, failed={"UNAVAILABLE": 10})
    assert failed.problems() == ["driver: calls failed: 10 UNAVAILABLE"]
    lost = _result(succeeded=990)
    assert lost.problems() == ["driver: 1000 calls started, 990 ended"]


def test_a_saturated_driver_is_an_environmental_problem():
    assert _result(load_cpu_s=8.9).environmental_problems() == []
    (problem,) = _result(load_cpu_s=9.0).environmental_problems()
    assert "90% busy" in problem


def test_machine_busy_time_leaves_out_idle_and_iowait():
    ticks = processes.CLOCK_TICKS_PER_S
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat = f"cpu  {ticks} 0 {ticks} {50 * ticks} {7 * ticks} 0 {ticks} 0 0 0\ncpu0 1 2 3\n"
    assert processes.machine_busy_s(stat) == 3.0
    with pytest.raises(ValueError):
        processes.machine_busy_s("intr 1 2 3\n")


def test_the_rest_of_the_machine_is_what_no_measured_process_used():
    made = run(postgres.NAME, postgres.CREATE_NOTE, 1, 8, cpu_us_machine=500.0, cpu_us_load=100.0, cpu_us_notes=150.0)
    postgres._charge_the_rest(made, ("cpu_us_load", "cpu_us_notes"))
    assert made.values["cpu_us_other"] == 250.0
    partial = run(postgres.NAME, postgres.CREATE_NOTE, 1, 8, cpu_us_machine=500.0)
    postgres._charge_the_rest(partial, ("cpu_us_load",))
    assert "cpu_us_other" not in partial.values


def test_database_urls_name_the_database_and_hide_the_password():
    assert (
        pg.with_database("postgres://u@h:5432/postgres?sslmode=disable", "x") == "postgres://u@h:5432/x?sslmode=disable"
    )
    assert pg.redacted("postgres://u:secret@h/db") == "postgres://u:***@h/db"
    assert pg.redacted("postgres://u@h/db") == "postgres://u@h/db"


def test_only_databases_the_benchmark_created_are_dropped():
    with pytest.raises(ValueError, match="not created by this benchmark"):
        pg.Postgres("postgres://u@h/postgres").drop_database("postgres://u@h/someone_elses")
