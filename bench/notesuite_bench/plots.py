"""One PNG per scenario: bars at the median, error bars from the min to the max over rounds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Figure, not pyplot: no GUI backend and no global figure state, files only.
from matplotlib.figure import Figure

from .measure import Run
from .scenarios import footprint, health, hop, overload, postgres, streaming, telemetry
from .services import PEER_KINDS
from .stats import Selection, stat

NOTESUITE_COLOUR = "#2b6cb0"
PEER_COLOUR = "#a0aec0"


@dataclass(frozen=True)
class Panel:
    title: str
    key: str
    scale: float = 1.0
    limit: float | None = None  # a budget, drawn as a dashed line


def write_all(runs: list[Run], scenarios: list[str], out_dir: Path) -> list[Path]:
    written = []
    for name, plot in (
        (health.NAME, _health),
        (hop.NAME, _hop),
        (telemetry.NAME, _telemetry),
        (footprint.NAME, _footprint),
        (postgres.NAME, _postgres),
        (streaming.NAME, _streaming),
        (overload.NAME, _overload),
    ):
        if name in scenarios and any(run.scenario == name for run in runs):
            path = out_dir / f"{name}.png"
            plot(runs, path)
            written.append(path)
    return written


PEERS = {kind.name for kind in PEER_KINDS}
# Bars in grey: what notesuite is compared with.
BASELINE_SERIES = (
    PEERS
    | {postgres.PGBENCH_SINGLE_ROW, postgres.PGBENCH_TRANSACTION}
    | {postgres.read_series(method, postgres.SQLITE) for method in postgres.READ_METHODS}
    | set(streaming.PEER_WATCH.values())
    | {streaming.SQLITE_BULK, streaming.SQLITE_BULK_ALL, streaming.PG_MULTI_ROW, streaming.PG_COPY}
    | {streaming.PG_MULTI_ROW_ALL}
    | {hop.series_name(hop.PROXIED_METHOD, path) for path in hop.PROXY_PATHS}
)


def _bars(axis, runs: list[Run], selections: list[Selection], panel: Panel, with_load: bool = False) -> None:
    medians, lows, highs, colours, labels = [], [], [], [], []
    for selection in selections:
        value = stat(runs, selection, panel.key)
        median = value.median * panel.scale if value else 0.0
        medians.append(median)
        lows.append(median - value.low * panel.scale if value else 0.0)
        highs.append(value.high * panel.scale - median if value else 0.0)
        colours.append(PEER_COLOUR if selection.series in BASELINE_SERIES else NOTESUITE_COLOUR)
        labels.append(f"{selection.series} @{selection.in_flight}" if with_load else selection.series)
    positions = range(len(selections))
    axis.bar(positions, medians, yerr=[lows, highs], capsize=3, color=colours)
    axis.set_xticks(list(positions), labels, rotation=35, ha="right", fontsize=8)
    axis.set_title(panel.title, fontsize=10)
    if panel.limit is not None:
        axis.axhline(panel.limit, linestyle="--", color="#c53030", linewidth=1)
    axis.grid(axis="y", alpha=0.3)


def _save(figure: Figure, path: Path, title: str) -> None:
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _overload(runs: list[Run], path: Path) -> None:
    selections = [
        Selection(overload.NAME, overload.series_name(method, crowd, limit), load.in_flight)
        for limit in overload.LIMITS
        for crowd in overload.CROWDS
        for method in overload.METHODS
        for load in overload.LOADS
    ]
    figure = Figure(figsize=(16, 5))
    axes = figure.subplots(1, 3)
    _bars(axes[0], runs, selections, Panel("goodput (OK answers/s)", "goodput"), with_load=True)
    _bars(axes[1], runs, selections, Panel("p99 of OK calls (ms)", "ok_p99_ms"), with_load=True)
    _bars(axes[2], runs, selections, Panel("shed calls/s", "shed_per_s"), with_load=True)
    _save(figure, path, "Overload: notes with 1x, 3x, 10x 1,024 calls in flight, by --concurrency-limit")


def _health(runs: list[Run], path: Path) -> None:
    present = {run.series for run in runs if run.scenario == health.NAME}
    ordered = [f"notesuite {name}" for name in health.NOTESUITE_SERVICES] + [kind.name for kind in PEER_KINDS]
    series = [name for name in ordered if name in present]
    panels = (
        Panel("k req/s", "rps", 1e-3),
        Panel("p99 ms", "p99_ms"),
        Panel("server CPU µs per call", "cpu_us_server"),
    )
    figure = Figure(figsize=(15, 8))
    axes = figure.subplots(len(health.LOADS), len(panels), squeeze=False)
    for row, load in enumerate(health.LOADS):
        selections = [Selection(health.NAME, name, load.in_flight) for name in series]
        for column, panel in enumerate(panels):
            titled = Panel(f"{panel.title} @{load.in_flight} in flight", panel.key, panel.scale)
            _bars(axes[row][column], runs, selections, titled)
    _save(figure, path, "Health/Check, server on one core (median, min–max over rounds)")


def _hop(runs: list[Run], path: Path) -> None:
    selections = [
        Selection(hop.NAME, hop.series_name(method, route), load.in_flight)
        for load in hop.LOADS
        for method in hop.METHODS
        for route in hop.PATHS
    ]
    via = [s for s in selections if s.series.endswith(hop.VIA_GATEWAY)]
    panels = (
        (Panel("k req/s", "rps", 1e-3), selections),
        (Panel("p99 ms", "p99_ms"), selections),
        (Panel("notes CPU µs per call", "cpu_us_notes"), selections),
        (Panel("gateway CPU µs per forwarded call", "cpu_us_gateway", limit=15), via),
    )
    # GetNote through each hop (gateway, proxies, two replicas), with the hop process's CPU.
    peers = [
        Selection(hop.NAME, hop.series_name(hop.PROXIED_METHOD, route), load.in_flight)
        for load in hop.LOADS
        for route in hop.paths(hop.PROXIED_METHOD)
    ]
    peers = [s for s in peers if s.runs(runs)]
    peer_panels = (
        (Panel("GetNote k req/s", "rps", 1e-3), peers),
        (Panel("GetNote p99 ms", "p99_ms"), peers),
    )
    figure = Figure(figsize=(18, 10))
    axes = figure.subplots(2, len(panels), squeeze=False)
    for column, (panel, chosen) in enumerate(panels):
        _bars(axes[0][column], runs, chosen, panel, with_load=True)
    for column, (panel, chosen) in enumerate(peer_panels):
        _bars(axes[1][column], runs, chosen, panel, with_load=True)
    hops = [s for s in peers if not s.series.endswith(hop.DIRECT)]
    for column, load in enumerate(hop.LOADS, start=len(peer_panels)):
        chosen = [s for s in hops if s.in_flight == load.in_flight]
        _hop_cpu_bars(axes[1][column], runs, chosen, f"hop CPU µs per forwarded GetNote @{load.in_flight}")
    _save(figure, path, "Gateway hop: notes directly vs through the gateway, and beside real proxies")


def _hop_cpu_bars(axis, runs: list[Run], selections: list[Selection], title: str) -> None:
    """The hop process's CPU per call: each series has its own key (cpu_us_gateway, _haproxy...)."""
    medians, lows, highs, labels = [], [], [], []
    for selection in selections:
        route = selection.series.removeprefix(f"{hop.PROXIED_METHOD} ")
        value = stat(runs, selection, f"cpu_us_{hop.HOP_LABELS[route]}")
        median = value.median if value else 0.0
        medians.append(median)
        lows.append(median - value.low if value else 0.0)
        highs.append(value.high - median if value else 0.0)
        labels.append(route)
    colours = [NOTESUITE_COLOUR if "gateway" in label else PEER_COLOUR for label in labels]
    positions = range(len(selections))
    axis.bar(positions, medians, yerr=[lows, highs], capsize=3, color=colours)
    axis.set_xticks(list(positions), labels, rotation=35, ha="right", fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.axhline(15, linestyle="--", color="#c53030", linewidth=1)
    axis.grid(axis="y", alpha=0.3)


def _telemetry(runs: list[Run], path: Path) -> None:
    selections = [Selection(telemetry.NAME, variant, telemetry.LOAD.in_flight) for variant in telemetry.VARIANTS]
    panels = (Panel("k req/s", "rps", 1e-3), Panel("p99 ms", "p99_ms"), Panel("notes CPU µs per call", "cpu_us_notes"))
    figure = Figure(figsize=(13, 4.5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for column, panel in enumerate(panels):
        _bars(axes[0][column], runs, selections, panel)
    _save(figure, path, f"Telemetry cost: GetNote on notes, {telemetry.LOAD.in_flight} in flight")


def _footprint(runs: list[Run], path: Path) -> None:
    present = {run.series for run in runs if run.scenario == footprint.NAME}
    ordered = [f"notesuite {name}" for name in health.NOTESUITE_SERVICES] + [kind.name for kind in PEER_KINDS]
    series = [name for name in ordered if name in present]
    selections = [Selection(footprint.NAME, name) for name in series]
    panels = (
        Panel("idle RSS MB", "idle_rss_mb", limit=10),
        Panel("KB per idle connection", "kb_per_connection", limit=30),
        Panel("exec → first SERVING check, ms", "startup_ms", limit=50),
    )
    figure = Figure(figsize=(15, 4.5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for column, panel in enumerate(panels):
        _bars(axes[0][column], runs, selections, panel)
    _save(figure, path, "Footprint and start-up (dashed: budget)")


def _postgres(runs: list[Run], path: Path) -> None:
    writes = [
        Selection(postgres.NAME, series, load.in_flight)
        for load in postgres.WRITE_LOADS
        for series in postgres.WRITE_SERIES
    ]
    reads = [
        Selection(postgres.NAME, postgres.read_series(method, backend), postgres.READ_LOAD.in_flight)
        for method in postgres.READ_METHODS
        for backend in postgres.BACKENDS
    ]
    panels = (
        (Panel("writes: req/s (tps)", "rps"), writes),
        (Panel("writes: p99 ms", "p99_ms"), writes),
        (Panel("writes: rest of machine CPU µs per call", "cpu_us_other"), writes),
        (Panel("reads: k req/s", "rps", 1e-3), reads),
        (Panel("reads: p99 ms", "p99_ms"), reads),
    )
    figure = Figure(figsize=(22, 5.5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for column, (panel, chosen) in enumerate(panels):
        _bars(axes[0][column], runs, chosen, panel, with_load=True)
    _save(figure, path, "PostgreSQL: CreateNote via gateway vs pgbench (grey); reads, SQLite (grey) vs PostgreSQL")


def _streaming(runs: list[Run], path: Path) -> None:
    present = {run.series for run in runs if run.scenario == streaming.NAME}

    def chosen(series: tuple[str, ...]) -> list[Selection]:
        return [Selection(streaming.NAME, name) for name in series if name in present]

    panels = (
        (Panel("KB per stream", "kb_per_stream", limit=10), chosen(streaming.MEMORY_SERIES)),
        (Panel("fan-out p99 ms (one write → every stream)", "p99_ms", limit=100), chosen(streaming.FANOUT_SERIES)),
        (Panel("fan-out max ms", "max_ms"), chosen(streaming.FANOUT_SERIES)),
        (Panel("k notes/s", "notes_per_s", 1e-3), chosen(streaming.IMPORT_SERIES)),
    )
    figure = Figure(figsize=(20, 5.5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for column, (panel, selections) in enumerate(panels):
        _bars(axes[0][column], runs, selections, panel)
    _save(figure, path, "Streaming: memory per stream, fan-out, ImportNotes vs bulk inserts (grey: baselines)")
