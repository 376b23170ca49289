"""grpc.health.v1.Health/Check on every notesuite service and every reference peer."""

from __future__ import annotations

from ..context import Context
from ..h2probe import EMPTY_HEALTH_CHECK_REQUEST
from ..load import Load, Target
from ..measure import Observed, Run, RunSpec, health_probe
from ..metrics import Method
from ..services import PEER_KINDS, Server

NAME = "health"
LOADS = (Load(clients=4, streams=10), Load(clients=50, streams=20))
HEALTH_CHECK = Method("grpc.health.v1.Health", "Check")
NOTESUITE_SERVICES = ("users", "notes", "gateway")


def planned_runs(rounds: int, with_peers: bool) -> int:
    servers = len(NOTESUITE_SERVICES) + (len(PEER_KINDS) if with_peers else 0)
    return rounds * len(LOADS) * servers


def run(context: Context) -> list[Run]:
    body_file = context.raw_dir / "health-check-request.bin"
    body_file.write_bytes(EMPTY_HEALTH_CHECK_REQUEST)
    runs = []
    with context.process_group() as group:
        users, notes, gateway = context.notesuite.start_suite(group)
        servers: list[tuple[str, Server]] = [
            ("notesuite users", users),
            ("notesuite notes", notes),
            ("notesuite gateway", gateway),
        ]
        if context.peers is not None:
            servers += [(kind.name, context.peers.start(group, kind)) for kind in PEER_KINDS]
        for round_ in range(1, context.rounds + 1):
            for load in LOADS:
                for series, server in servers:
                    runs.append(context.measure(_spec(series, server, round_, load, body_file)))
    return runs


def _spec(series: str, server: Server, round_: int, load: Load, body_file) -> RunSpec:
    has_metrics = server.metrics_address is not None
    return RunSpec(
        scenario=NAME,
        series=series,
        round=round_,
        target=Target(server.address, HEALTH_CHECK.path, body_file),
        load=load,
        observed=(Observed("server", server, HEALTH_CHECK if has_metrics else None),),
        probe=None if has_metrics else health_probe(server.address),
    )
