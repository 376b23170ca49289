"""The gateway hop: GetNote and CreateNote straight to notes, and the same calls through the
gateway. users, notes and the gateway all share the server core."""

from __future__ import annotations

from pathlib import Path

from ..context import Context
from ..load import Load, Target
from ..measure import Observed, Run, RunSpec
from ..metrics import Method
from ..services import SERVICE_NAMES, Server
from ..stubs import bearer, grpc_frame

NAME = "hop"
LOADS = (Load(clients=4, streams=10), Load(clients=50, streams=20))
METHODS = ("GetNote", "CreateNote")
DIRECT = "direct"
VIA_GATEWAY = "via gateway"
PATHS = (DIRECT, VIA_GATEWAY)


def planned_runs(rounds: int) -> int:
    return rounds * len(LOADS) * len(METHODS) * len(PATHS)


def series_name(method: str, path: str) -> str:
    return f"{method} {path}"


def run(context: Context) -> list[Run]:
    runs = []
    with context.process_group() as group:
        _users, notes, gateway = context.notesuite.start_suite(group)
        token = context.stubs.sign_up(gateway.address)
        note_id = context.stubs.create_note(gateway.address, token, "the note every GetNote reads")
        requests = {
            "GetNote": context.stubs.get_note_request(note_id),
            # Title only and no request_id: every call creates a new note.
            "CreateNote": context.stubs.create_note_request("bench"),
        }
        body_files = {}
        for method, request in requests.items():
            body_files[method] = context.raw_dir / f"{method}-request.bin"
            body_files[method].write_bytes(grpc_frame(request))
        for round_ in range(1, context.rounds + 1):
            for load in LOADS:
                for method in METHODS:
                    for path in PATHS:
                        spec = _spec(round_, load, method, path, notes, gateway, body_files[method], token)
                        runs.append(context.measure(spec))
    return runs


def _spec(
    round_: int, load: Load, method_name: str, path: str, notes: Server, gateway: Server, body_file: Path, token: str
) -> RunSpec:
    method = Method(SERVICE_NAMES["notes"], method_name)
    observed = [Observed("notes", notes, method)]
    entry = notes
    if path == VIA_GATEWAY:
        observed.insert(0, Observed("gateway", gateway, method))
        entry = gateway
    return RunSpec(
        scenario=NAME,
        series=series_name(method_name, path),
        round=round_,
        target=Target(entry.address, method.path, body_file, bearer(token)),
        load=load,
        observed=tuple(observed),
    )
