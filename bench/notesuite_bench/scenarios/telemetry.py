"""What per-call telemetry costs: GetNote straight to notes with the RPC layers off, on (the
default, nothing exported), and on with OTLP export to a sink collector."""

from __future__ import annotations

from ..context import Context
from ..load import Load, Target
from ..measure import Observed, Run, RunSpec
from ..metrics import Method
from ..otlp_sink import OtlpSink
from ..services import SERVICE_NAMES
from ..stubs import bearer, grpc_frame

NAME = "telemetry"
LOAD = Load(clients=4, streams=10)
OFF = "layers off"
DEFAULT = "default (no export)"
EXPORTING = "exporting (OTLP)"
VARIANTS = (OFF, DEFAULT, EXPORTING)
GET_NOTE = Method(SERVICE_NAMES["notes"], "GetNote")


def planned_runs(rounds: int) -> int:
    return rounds * len(VARIANTS)


def run(context: Context) -> list[Run]:
    runs = []
    sink = OtlpSink()
    try:
        with context.process_group() as group:
            environments = {
                OFF: {"NOTESUITE_RPC_TELEMETRY": "off"},
                DEFAULT: {},
                EXPORTING: {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
            }
            notes = {
                variant: context.notesuite.start(group, "notes", name=f"notes-{index}", env=env)
                for index, (variant, env) in enumerate(environments.items())
            }
            # users and a gateway only to sign up: the token is valid on every notes process.
            users = context.notesuite.start(group, "users")
            gateway = context.notesuite.start(group, "gateway", backends=(users, notes[DEFAULT]))
            token = context.stubs.sign_up(gateway.address)
            targets = {}
            for variant, server in notes.items():
                note_id = context.stubs.create_note(server.address, token, "telemetry bench")
                body_file = context.raw_dir / f"GetNote-{variant.split()[0]}-request.bin"
                body_file.write_bytes(grpc_frame(context.stubs.get_note_request(note_id)))
                targets[variant] = (server, Target(server.address, GET_NOTE.path, body_file, bearer(token)), note_id)
            for round_ in range(1, context.rounds + 1):
                for variant in VARIANTS:
                    server, target, note_id = targets[variant]
                    has_metrics = variant != OFF
                    spec = RunSpec(
                        scenario=NAME,
                        series=variant,
                        round=round_,
                        target=target,
                        load=LOAD,
                        observed=(Observed("notes", server, GET_NOTE if has_metrics else None),),
                        # With the layers off nothing counts calls by status: a real call checks
                        # that the exact request h2load sends succeeds.
                        probe=None if has_metrics else _get_note_probe(context, server.address, token, note_id),
                    )
                    runs.append(_with_exports(context, spec, sink, variant == EXPORTING))
    finally:
        sink.stop()
    return runs


def _get_note_probe(context: Context, address: str, token: str, note_id: str):
    return lambda: context.stubs.get_note(address, token, note_id)


def _with_exports(context: Context, spec: RunSpec, sink: OtlpSink, exporting: bool) -> Run:
    def measure() -> Run:
        before = sink.counts()
        run = context.runner.run(spec)
        after = sink.counts()
        if exporting:
            for key in before:
                run.values[f"otlp_{key}"] = float(after[key] - before[key])
            # The exporter sends a batch on a timer (5 s by default) or once it holds a full
            # batch of spans: a short run on a busy machine may end before either.
            if after["traces_exports"] == before["traces_exports"]:
                run.reject("no trace export reached the OTLP sink during the run", environmental=True)
        return run

    return context.guarded(spec.scenario, spec.series, spec.round, spec.load.in_flight, measure)
