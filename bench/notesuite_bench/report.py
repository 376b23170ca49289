"""results.md: the machine, the budgets, one table per scenario, and every invalid run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .budgets import PASS, Budget
from .imports import IMPORT_BATCH
from .measure import NotRun, Run
from .scenarios import footprint, health, hop, overload, postgres, streaming, telemetry
from .services import PEER_KINDS
from .stats import Selection, Stat, difference, paired, ratio, stat

BASELINES = ("grpc-go", "grpc-c++", "tonic current")


@dataclass(frozen=True)
class Header:
    title: str
    command: str
    machine: dict[str, str]
    settings: dict[str, str]


def markdown(
    header: Header,
    runs: list[Run],
    budgets: list[Budget],
    not_run: list[NotRun],
    scenarios: list[str],
    sections: dict[str, str] | None = None,
) -> str:
    parts = [_header(header), _budgets(budgets)]
    if health.NAME in scenarios:
        parts.append(_health(runs))
    if hop.NAME in scenarios:
        parts.append(_hop(runs))
        parts.append(_hop_peers(runs))
    if telemetry.NAME in scenarios:
        parts.append(_telemetry(runs))
    if footprint.NAME in scenarios:
        parts.append(_footprint(runs))
    if postgres.NAME in scenarios:
        parts.append(_postgres(runs, (sections or {}).get(postgres.NAME)))
    if streaming.NAME in scenarios:
        parts.append(_streaming(runs))
    if overload.NAME in scenarios:
        parts.append(_overload(runs))
    parts += [_not_run(not_run), _invalid(runs), _warnings(runs), METHOD]
    return "\n\n".join(part.rstrip() for part in parts) + "\n"


def table(columns: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    columns = list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: Stat | None, digits: int = 1, scale: float = 1.0) -> str:
    if value is None:
        return "—"
    return value.text(digits, scale)


def validity(runs: list[Run], selection: Selection) -> str:
    selected = selection.runs(runs)
    valid = sum(run.valid for run in selected)
    text = f"{valid}/{len(selected)}"
    return text if valid == len(selected) else f"**{text} INVALID**"


def _header(header: Header) -> str:
    machine = "\n".join(f"- {key}: {value}" for key, value in header.machine.items())
    settings = "\n".join(f"- {key}: {value}" for key, value in header.settings.items())
    return f"# {header.title}\n\nCommand: `{header.command}`\n\n## Machine\n\n{machine}\n\n## Settings\n\n{settings}"


def _budgets(budgets: list[Budget]) -> str:
    rows = [(b.verdict if b.verdict == PASS else f"**{b.verdict}**", b.budget, b.subject, b.measured) for b in budgets]
    return "## Budgets (SPEC §11)\n\n" + table(("verdict", "budget", "subject", "measured (median, min–max)"), rows)


def _health_series(runs: list[Run]) -> list[str]:
    present = {run.series for run in runs if run.scenario == health.NAME}
    ordered = [f"notesuite {name}" for name in health.NOTESUITE_SERVICES] + [kind.name for kind in PEER_KINDS]
    return [series for series in ordered if series in present]


def _health(runs: list[Run]) -> str:
    series = _health_series(runs)
    baselines = [name for name in BASELINES if name in series]
    parts = [
        (
            "## Health/Check: notesuite services vs reference servers\n\n"
            "Every server on core 1 (all started once, idle but the one under load), h2load on "
            "core 0. Medians over rounds (min–max); ratios are req/s divided by the baseline's, "
            "round by round."
        )
    ]
    for load in health.LOADS:
        rows = []
        for name in series:
            selection = Selection(health.NAME, name, load.in_flight)
            ratios = [
                cell(paired(runs, selection, Selection(health.NAME, base, load.in_flight), "rps", ratio), 2)
                for base in baselines
            ]
            rows.append(
                (
                    name,
                    cell(stat(runs, selection, "rps"), 1, 1e-3),
                    cell(stat(runs, selection, "p50_ms"), 2),
                    cell(stat(runs, selection, "p99_ms"), 2),
                    cell(stat(runs, selection, "p999_ms"), 2),
                    cell(stat(runs, selection, "cpu_us_server"), 1),
                    *ratios,
                    validity(runs, selection),
                )
            )
        columns = (
            "server",
            "k req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "CPU µs/call",
            *(f"× {b}" for b in baselines),
            "valid",
        )
        parts.append(f"### {load.in_flight} in flight (-c {load.clients} -m {load.streams})\n\n" + table(columns, rows))
    return "\n\n".join(parts)


def _hop(runs: list[Run]) -> str:
    rows = []
    for load in hop.LOADS:
        for method in hop.METHODS:
            for path in hop.PATHS:
                selection = Selection(hop.NAME, hop.series_name(method, path), load.in_flight)
                rows.append(
                    (
                        selection.series,
                        str(load.in_flight),
                        cell(stat(runs, selection, "rps"), 1, 1e-3),
                        cell(stat(runs, selection, "p50_ms"), 2),
                        cell(stat(runs, selection, "p99_ms"), 2),
                        cell(stat(runs, selection, "cpu_us_notes"), 1),
                        cell(stat(runs, selection, "cpu_us_gateway"), 1),
                        validity(runs, selection),
                    )
                )
    calls = table(
        ("call", "in flight", "k req/s", "p50 ms", "p99 ms", "notes CPU µs/call", "gateway CPU µs/call", "valid"), rows
    )
    added = []
    for load in hop.LOADS:
        for method in hop.METHODS:
            via = Selection(hop.NAME, hop.series_name(method, hop.VIA_GATEWAY), load.in_flight)
            direct = Selection(hop.NAME, hop.series_name(method, hop.DIRECT), load.in_flight)
            added.append(
                (
                    method,
                    str(load.in_flight),
                    cell(paired(runs, via, direct, "p50_ms", difference), 2),
                    cell(paired(runs, via, direct, "p99_ms", difference), 2),
                    cell(stat(runs, via, "cpu_us_gateway"), 1),
                    cell(paired(runs, via, direct, "cpu_us_notes", difference), 1),
                    cell(paired(runs, via, direct, "rps", ratio), 2),
                )
            )
    hop_table = table(
        (
            "method",
            "in flight",
            "added p50 ms",
            "added p99 ms",
            "gateway CPU µs per forwarded call",
            "Δ notes CPU µs/call",
            "req/s via ÷ direct",
        ),
        added,
    )
    return (
        "## Gateway hop: notes directly vs through the gateway\n\n"
        "users, notes and the gateway share core 1; h2load on core 0. CPU per call is each "
        "process's utime+stime over the run divided by the calls h2load completed.\n\n"
        f"{calls}\n\nWhat the hop adds (round by round: via gateway − direct):\n\n{hop_table}"
    )


def _overload(runs: list[Run]) -> str:
    rows = []
    selections = [
        Selection(overload.NAME, overload.series_name(method, crowd, limit), load.in_flight)
        for limit in overload.LIMITS
        for crowd in overload.CROWDS
        for method in overload.METHODS
        for load in overload.LOADS
    ]
    for selection in selections:
        multiple = f"{selection.in_flight / overload.ADMITTED:g}x"
        rows.append(
            (
                selection.series,
                f"{selection.in_flight:,} ({multiple})",
                cell(stat(runs, selection, "goodput"), 0),
                cell(stat(runs, selection, "ok_p50_ms"), 1),
                cell(stat(runs, selection, "ok_p99_ms"), 1),
                cell(stat(runs, selection, "shed_per_s"), 0),
                cell(stat(runs, selection, "shed_share"), 1, 100),
                validity(runs, selection),
            )
        )
    calls = table(("call", "in flight", "goodput (OK/s)", "OK p50 ms", "OK p99 ms", "shed/s", "shed %", "valid"), rows)
    return (
        "## Overload: goodput with more calls in flight than the process serves\n\n"
        f"One notes process (SQLite) per way of setting its limit (`--concurrency-limit` pool: 8 pooled "
        f"connections x 8 = 64; pool, no wait: the same with `--admission-wait 0`, every call over the "
        f"limit shed at once; fixed: {overload.ADMITTED:,}; adaptive), on core 1, h2load on core 0 keeping "
        f'1x, 3x and 10x {overload.ADMITTED:,} calls in flight; "at once": a shed call is retried at once; "paced": '
        f"each connection starts at most {overload.PACED_RPS} calls/s, so the offered load is 1x, 3x, 10x "
        "what the process serves. Counts and "
        "the latency of OK calls are the server's (its call-duration histogram by status, p50/p99 "
        "interpolated within a bucket).\n\n"
        f"{calls}"
    )


def _hop_peers(runs: list[Run]) -> str:
    """GetNote direct, through the gateway, through each proxy and through a gateway balancing
    two notes replicas: what each hop adds, and its CPU per call beside the backend's own."""
    method = hop.PROXIED_METHOD
    parts = []
    for load in hop.LOADS:
        direct = Selection(hop.NAME, hop.series_name(method, hop.DIRECT), load.in_flight)
        gateway = Selection(hop.NAME, hop.series_name(method, hop.VIA_GATEWAY), load.in_flight)
        rows = []
        for path in hop.paths(method):
            selection = Selection(hop.NAME, hop.series_name(method, path), load.in_flight)
            if not selection.runs(runs):
                continue
            hop_cpu = f"cpu_us_{hop.HOP_LABELS[path]}" if path != hop.DIRECT else None
            if path == hop.VIA_REPLICAS:
                notes_cpu = " + ".join(
                    cell(stat(runs, selection, f"cpu_us_{label}"), 1) for label in hop.REPLICA_LABELS
                )
                shares = " / ".join(
                    cell(stat(runs, selection, f"share_{label}"), 0, 100) for label in hop.REPLICA_LABELS
                )
                notes_cpu += f" (calls {shares} %)"
            else:
                notes_cpu = cell(stat(runs, selection, "cpu_us_notes"), 1)
            by_path = hop_cpu is not None
            rows.append(
                (
                    path,
                    cell(stat(runs, selection, "rps"), 1, 1e-3),
                    cell(stat(runs, selection, "p50_ms"), 2),
                    cell(stat(runs, selection, "p99_ms"), 2),
                    cell(paired(runs, selection, direct, "p99_ms", difference), 2) if by_path else "—",
                    cell(stat(runs, selection, hop_cpu), 1) if by_path else "—",
                    cell(paired(runs, selection, direct, hop_cpu, ratio, "cpu_us_notes"), 2) if by_path else "—",
                    cell(paired(runs, gateway, selection, "cpu_us_gateway", ratio, hop_cpu), 2)
                    if by_path and path != hop.VIA_GATEWAY
                    else "—",
                    notes_cpu,
                    validity(runs, selection),
                )
            )
        columns = (
            "GetNote",
            "k req/s",
            "p50 ms",
            "p99 ms",
            "added p99 ms",
            "hop CPU µs/call",
            "× notes' own (direct)",
            "gateway ÷ this hop",
            "notes CPU µs/call",
            "valid",
        )
        parts.append(f"### {load.in_flight} in flight (-c {load.clients} -m {load.streams})\n\n" + table(columns, rows))
    return (
        "## Gateway hop beside real proxies: GetNote\n\n"
        "The same GetNote request and token to the same notes process, directly, through the gateway and "
        "through HAProxy (`mode http`, `proto h2` both sides, `http-reuse always`), nginx (`grpc_pass`, upstream "
        "`keepalive`) and Envoy, each proxy one process with one worker on core 1 like the suite, forwarding "
        "h2c; and through a second gateway balancing across two notes processes on one SQLite file. Hop CPU is "
        "the process making the hop (gateway or proxy); added p99 and the ratios are taken round by round; "
        "× notes' own divides by notes' CPU per call on the direct path of the same round. Through a proxy, "
        "notes' count of calls by gRPC status checks the run, and a health check through the proxy after it "
        "checks that the trailers come back.\n\n" + "\n\n".join(parts)
    )


def _telemetry(runs: list[Run]) -> str:
    off = Selection(telemetry.NAME, telemetry.OFF, telemetry.LOAD.in_flight)
    rows = []
    for variant in telemetry.VARIANTS:
        selection = Selection(telemetry.NAME, variant, telemetry.LOAD.in_flight)
        rows.append(
            (
                variant,
                cell(stat(runs, selection, "rps"), 1, 1e-3),
                cell(stat(runs, selection, "p99_ms"), 2),
                cell(stat(runs, selection, "cpu_us_notes"), 2),
                "—" if variant == telemetry.OFF else cell(paired(runs, selection, off, "cpu_us_notes", difference), 2),
                "—"
                if variant == telemetry.OFF
                else cell(paired(runs, selection, off, "rps", lambda a, b: (a / b - 1) * 100), 1),
                cell(stat(runs, selection, "otlp_traces_exports"), 0) if variant == telemetry.EXPORTING else "—",
                validity(runs, selection),
            )
        )
    return (
        f"## Telemetry cost: GetNote straight to notes, {telemetry.LOAD.in_flight} in flight\n\n"
        "Three notes processes (same binary) on core 1; the OTLP sink runs in the harness on core 0.\n\n"
        + table(
            (
                "variant",
                "k req/s",
                "p99 ms",
                "CPU µs/call",
                "Δ CPU µs/call vs off",
                "Δ req/s vs off %",
                "OTLP trace exports",
                "valid",
            ),
            rows,
        )
    )


def _footprint(runs: list[Run]) -> str:
    present = {run.series for run in runs if run.scenario == footprint.NAME}
    ordered = [f"notesuite {name}" for name in health.NOTESUITE_SERVICES] + [kind.name for kind in PEER_KINDS]
    rows = []
    for name in (series for series in ordered if series in present):
        selection = Selection(footprint.NAME, name)
        rows.append(
            (
                name,
                cell(stat(runs, selection, "idle_rss_mb"), 1),
                cell(stat(runs, selection, "kb_per_connection"), 1),
                cell(stat(runs, selection, "startup_ms"), 1),
                cell(stat(runs, selection, "check_ms"), 2),
                validity(runs, selection),
            )
        )
    return (
        "## Footprint and start-up\n\n"
        "Idle RSS: VmRSS after start and one health check. Per idle connection: RSS growth while "
        "opening HTTP/2 connections (preface, SETTINGS exchange, one health check each) and "
        "holding them idle, per connection: the median over 10 equal steps. Start-up: from just before the fork of the "
        "server binary (no wrapper) to the first grpc-status 0 + SERVING, retrying a health check "
        "on a fresh connection with no pause; each round's value is the median of its repeats. "
        "The last column is one such check against a running server: the loop's own share of "
        "the start-up time. RSS counts touched pages: memory an allocator kept from earlier "
        "work (e.g. a password hash at start-up) is reused without growing RSS, so a "
        "per-connection cost can read low for a process with a large idle RSS.\n\n"
        + table(
            (
                "server",
                "idle RSS MB",
                "KB per idle connection",
                "first health check ms",
                "one check on a running server ms",
                "valid",
            ),
            rows,
        )
    )


def _postgres(runs: list[Run], explain: str | None) -> str:
    writes = []
    for load in postgres.WRITE_LOADS:
        single_row = Selection(postgres.NAME, postgres.PGBENCH_SINGLE_ROW, load.in_flight)
        transaction = Selection(postgres.NAME, postgres.PGBENCH_TRANSACTION, load.in_flight)
        for series in postgres.WRITE_SERIES:
            selection = Selection(postgres.NAME, series, load.in_flight)
            writes.append(
                (
                    series,
                    str(load.in_flight),
                    cell(stat(runs, selection, "rps"), 0),
                    cell(stat(runs, selection, "p50_ms"), 2),
                    cell(stat(runs, selection, "p99_ms"), 2),
                    cell(paired(runs, selection, single_row, "rps", ratio), 2),
                    cell(paired(runs, selection, transaction, "rps", ratio), 2),
                    cell(stat(runs, selection, "cpu_us_load"), 0),
                    cell(stat(runs, selection, "cpu_us_gateway"), 0),
                    cell(stat(runs, selection, "cpu_us_notes"), 0),
                    cell(stat(runs, selection, "cpu_us_other"), 0),
                    cell(stat(runs, selection, "machine_busy_pct"), 0),
                    cell(stat(runs, selection, "wal_bytes_per_call"), 0),
                    validity(runs, selection),
                )
            )
    writes_table = table(
        (
            "writer",
            "in flight",
            "req/s (tps)",
            "p50 ms",
            "p99 ms",
            "× single-row",
            "× transaction",
            "load CPU µs/call",
            "gateway CPU µs/call",
            "notes CPU µs/call",
            "rest of machine CPU µs/call",
            "machine busy %",
            "WAL bytes/call",
            "valid",
        ),
        writes,
    )
    reads = []
    for method in postgres.READ_METHODS:
        sqlite = Selection(postgres.NAME, postgres.read_series(method, postgres.SQLITE), postgres.READ_LOAD.in_flight)
        pg = Selection(postgres.NAME, postgres.read_series(method, postgres.POSTGRES), postgres.READ_LOAD.in_flight)
        reads.append(
            (
                method,
                cell(stat(runs, sqlite, "rps"), 1, 1e-3),
                cell(stat(runs, pg, "rps"), 1, 1e-3),
                cell(paired(runs, pg, sqlite, "rps", ratio), 2),
                cell(stat(runs, sqlite, "p99_ms"), 2),
                cell(stat(runs, pg, "p99_ms"), 2),
                cell(stat(runs, sqlite, "cpu_us_notes"), 0),
                cell(stat(runs, pg, "cpu_us_notes"), 0),
                f"{validity(runs, sqlite)}, {validity(runs, pg)}",
            )
        )
    reads_table = table(
        (
            "call",
            "SQLite k req/s",
            "PostgreSQL k req/s",
            "PostgreSQL ÷ SQLite",
            "SQLite p99 ms",
            "PostgreSQL p99 ms",
            "SQLite notes CPU µs/call",
            "PostgreSQL notes CPU µs/call",
            "valid",
        ),
        reads,
    )
    text = (
        "## PostgreSQL: CreateNote vs pgbench, reads vs SQLite\n\n"
        "PostgreSQL is a shared server the harness does not start or pin: its backends run on both "
        "cores, next to the load generator (core 0) and notesuite (core 1). Writes: CreateNote "
        f"through the gateway (title {len(postgres.TITLE)} chars, content {len(postgres.CONTENT)} B, "
        f"{len(postgres.TAGS)} tags, a fresh request_id per call, one owner per call in flight; "
        "grpc.aio driver), and pgbench on tables made by the notes migration, one client "
        "connection per call in flight, an owner per client: the single-row INSERT of the note "
        "row alone (the budget's baseline) and CreateNote's whole transaction (owner revision "
        "upsert, request_id lookup, note + tag rows + request record in one INSERT). notes' pool "
        f"holds up to {postgres.POOL_SIZE} connections, as many as the largest load has calls in "
        "flight. Ratios are round by round. Rest of machine: all CPUs' busy time over the run "
        "minus the processes measured one by one (load generator; gateway and notes), per call: "
        "PostgreSQL and anything else running. WAL bytes: the server's WAL insert position "
        "over the run (cluster-wide).\n\n"
        f"{writes_table}\n\n"
        f"Reads straight to notes, {postgres.READ_LOAD.in_flight} in flight (h2load -c "
        f"{postgres.READ_LOAD.clients} -m {postgres.READ_LOAD.streams}), one notes process per "
        f"backend with the default pool; the reader owns {postgres.READ_NOTES} notes, one in "
        f'{postgres.TAGGED_EVERY} tagged "{postgres.READ_TAG}"; ListNotes asks for a page of '
        f"{postgres.PAGE_SIZE} (and counts the matches, as every ListNotes does).\n\n{reads_table}"
    )
    if explain:
        text += f"\n\n### EXPLAIN (ANALYZE, BUFFERS) of a tag-filtered ListNotes page\n\n{explain}"
    return text


def _streaming(runs: list[Run]) -> str:
    present = {run.series for run in runs if run.scenario == streaming.NAME}
    memory = []
    for series in streaming.MEMORY_SERIES:
        if series not in present:
            continue
        selection = Selection(streaming.NAME, series)
        memory.append(
            (
                series,
                cell(stat(runs, selection, "streams"), 0),
                cell(stat(runs, selection, "kb_per_stream"), 2),
                cell(stat(runs, selection, "kb_per_stream_median_step"), 2),
                cell(stat(runs, selection, "kb_per_connection"), 1),
                cell(stat(runs, selection, "rss_before_mb"), 1),
                cell(stat(runs, selection, "rss_after_mb"), 1),
                cell(stat(runs, selection, "opens_per_s"), 0),
                validity(runs, selection),
            )
        )
    memory_table = table(
        (
            "server, stream",
            "streams",
            "KB per stream",
            "KB per stream, median step",
            "KB per connection",
            "RSS before MB",
            "RSS with the streams MB",
            "streams opened/s",
            "valid",
        ),
        memory,
    )
    peers = [name for name in streaming.PEER_WATCH.values() if name in present]
    peers_note = (
        ""
        if peers
        else "\n\nThe reference servers were not measured in this run (peers skipped: no --peers / "
        "NOTESUITE_PEERS_DIR), so there is no grpc-go Health/Watch stream to compare with."
    )
    fanout = []
    for series in streaming.FANOUT_SERIES:
        if series not in present:
            continue
        selection = Selection(streaming.NAME, series)
        fanout.append(
            (
                series,
                cell(stat(runs, selection, "streams"), 0),
                cell(stat(runs, selection, "p50_ms"), 1),
                cell(stat(runs, selection, "p99_ms"), 1),
                cell(stat(runs, selection, "max_ms"), 1),
                cell(stat(runs, selection, "worst_p99_ms"), 1),
                cell(stat(runs, selection, "create_ms"), 1),
                cell(stat(runs, selection, "load_busy_pct"), 0),
                cell(stat(runs, selection, "client_backlog_kb"), 0),
                validity(runs, selection),
            )
        )
    fanout_table = table(
        (
            "CreateNote written through → watchers on",
            "streams",
            "p50 ms",
            "p99 ms",
            "max ms",
            "worst write's p99 ms",
            "CreateNote call ms",
            "watch client busy %, first→last arrival",
            "watch client backlog KiB",
            "valid",
        ),
        fanout,
    )
    baselines = {ours: [] for ours, _ in streaming.IMPORT_BASELINES}
    for ours, baseline in (*streaming.IMPORT_BASELINES, *streaming.IMPORT_EVERYTHING):
        baselines[ours].append(baseline)
    imports = []
    for series in streaming.IMPORT_SERIES:
        if series not in present:
            continue
        selection = Selection(streaming.NAME, series)
        ratios = "; ".join(
            f"{cell(paired(runs, selection, Selection(streaming.NAME, base), 'notes_per_s', ratio), 2)} × {base}"
            for base in baselines.get(series, [])
        )
        imports.append(
            (
                series,
                cell(stat(runs, selection, "notes"), 0),
                cell(stat(runs, selection, "notes_per_s"), 0),
                cell(stat(runs, selection, "seconds"), 2),
                ratios or "—",
                validity(runs, selection),
            )
        )
    imports_table = table(("writer", "notes", "notes/s", "seconds", "ratio (round by round)", "valid"), imports)
    return (
        "## Streaming: WatchNotes and ImportNotes\n\n"
        "Straight to notes, no gateway, user tokens signed by the harness with keygen's key. Streams are held by "
        "a raw HTTP/2 client (watch_load.py) in a process of its own on core 0; every server on core 1, a "
        "fresh process per measurement. Memory: RSS growth while opening the streams (in "
        f"{streaming.OPEN_STEPS} steps, each stream counted once its first message arrived), divided by the "
        "streams; the connections are opened before and their cost shown apart. WatchNotes streams start "
        'from now, all for one owner; Health/Watch asks for service "" (SERVING at once).\n\n'
        f"{memory_table}{peers_note}\n\n"
        f"Fan-out: {streaming.WRITES} CreateNotes per round (title {len(postgres.TITLE)} chars, 1 KiB content, "
        f"{len(postgres.TAGS)} tags, a fresh request_id), {streaming.WRITE_PAUSE_S:g} s apart, after one "
        "unmeasured write, while the streams above are open; latency from just before the call is sent to "
        "the CREATED event's arrival on each stream (the kernel's receive timestamp of the socket read "
        "holding it, SO_TIMESTAMPNS); p50/p99/max over the streams, median over the writes. On PostgreSQL "
        "the streams are on the second of two notes replicas sharing one database. The watch client's busy "
        "share is its CPU time from the first stream's arrival to the last over that time; its backlog, "
        "the most bytes it found waiting in one socket: a run whose backlog reached half the socket's "
        "receive buffer is rejected (TCP may then have slowed the server).\n\n"
        f"{fanout_table}\n\n"
        "ImportNotes vs the database's own bulk insert of the same notes (title, 1 KiB content, 2 tags; "
        "the import also gives each item a request_id) into the notes table of a fresh copy of the notes "
        f"schema: sqlite3 with the store's settings, {IMPORT_BATCH} rows per transaction; "
        f"psql multi-row INSERTs of {IMPORT_BATCH} rows, each its own transaction, and one "
        "COPY (psql's \\timing of the statements). The import writes more per note (tag rows, change-log "
        "row, idempotency record, owner revision): that is its own work, as the budget counts it. The "
        'rows marked "all the import\'s rows" bulk-insert every one of those rows too (per batch, in one '
        "transaction: the owner's revision, then each table in one statement), which tells the rows' own "
        "cost from the rest of the import's (a statement per row, the request_id lookups, the log "
        "pruning, the service).\n\n"
        f"{imports_table}"
    )


def _not_run(not_run: list[NotRun]) -> str:
    if not not_run:
        return "## Not run\n\nNothing the chosen scenarios measure was left out."
    rows = [(item.scenario, item.budget, f"not run: {item.reason}") for item in not_run]
    return "## Not run\n\n" + table(("scenario", "budget", "why"), rows)


def _invalid(runs: list[Run]) -> str:
    invalid = [run for run in runs if not run.valid]
    if not invalid:
        return "## Invalid runs\n\nNone: every measured call ended with gRPC status OK."
    rows = [
        (
            run.scenario,
            run.series,
            "—" if run.in_flight is None else str(run.in_flight),
            str(run.round),
            "; ".join(map(str, run.problems)),
        )
        for run in invalid
    ]
    return "## Invalid runs\n\nLeft out of every median and ratio above.\n\n" + table(
        ("scenario", "series", "in flight", "round", "problems"), rows
    )


def _warnings(runs: list[Run]) -> str:
    flagged = [run for run in runs if run.warnings]
    if not flagged:
        return "## Warnings\n\nNone."
    rows = [
        (
            run.scenario,
            run.series,
            "—" if run.in_flight is None else str(run.in_flight),
            str(run.round),
            "; ".join(run.warnings),
        )
        for run in flagged
    ]
    return "## Warnings\n\nOddities that leave the run valid but that a server should not show.\n\n" + table(
        ("scenario", "series", "in flight", "round", "warning"), rows
    )


METHOD = """## How these numbers were taken

- Pinning: h2load and the harness on core 0, every server on core 1 (`taskset -c`).
- Every measured run follows a separate warm-up run of the same load (`-D`), then waits until
  the servers have no call of the method left in flight (from `rpc_server_active_calls`).
- Measured runs make a fixed number of calls (`-n`), sized from the warm-up's rate to last about
  the run duration: h2load then abandons no call at the end, so every call must end OK.
- A run is valid only if h2load reports every call finished, none failed, errored or timed out,
  all HTTP 2xx, and, for notesuite, the server's `rpc_server_call_duration_seconds_count` for the
  method grew by at least as many gRPC OK calls as h2load counted and by no call with any other
  status. Reference servers and the telemetry-off variant have no such counter: a real call
  after the run must succeed instead.
- Latency percentiles come from h2load's `--log-file` (µs per call), all calls of the run.
- CPU per call: the server process's utime+stime (all threads, /proc/PID/stat, 10 ms ticks)
  over the measured run, divided by the calls h2load completed.
- Rounds are interleaved (round → concurrency → server), so slow drift of the machine hits every
  server alike; compare numbers within one run only.
- raw/ holds the h2load logs (gzipped), the request bodies and every process's log."""
