"""Scenarios the spec asks for whose subject does not exist yet: each says why it did not run,
from what the contracts and the binary offer today."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

NAME = "streaming-postgres"


@dataclass(frozen=True)
class NotRun:
    scenario: str
    budget: str
    reason: str


def check(repo_root: Path, binary: Path) -> list[NotRun]:
    notes_proto = (repo_root / "proto/notesuite/notes/v1/notes.proto").read_text()
    notes_help = subprocess.run(
        [str(binary), "notes", "--help"], capture_output=True, text=True, check=True
    ).stdout.lower()
    postgres = "postgres" in notes_help

    def rpc(name: str) -> str:
        if f"rpc {name}(" in notes_proto:
            return f"NotesService/{name} exists but this harness has no scenario for it yet"
        return f"NotesService has no {name} RPC yet (proto/notesuite/notes/v1/notes.proto)"

    no_postgres = "notes has no PostgreSQL store yet (`notes --help`: --database-url takes sqlite:// only)"
    not_run = [
        NotRun("WatchNotes: 10,000 streams", "≤ 10 KB per stream on one notes process", rpc("WatchNotes")),
        NotRun(
            "WatchNotes: change fan-out", "one change reaches all 10,000 streams with p99 ≤ 100 ms", rpc("WatchNotes")
        ),
        NotRun(
            "ImportNotes on PostgreSQL vs pgbench",
            "≥ 80% of the database's bulk-insert rate",
            rpc("ImportNotes") if postgres else f"{rpc('ImportNotes')}; {no_postgres}",
        ),
    ]
    if not postgres:
        # The postgres scenario measures it once notes has a PostgreSQL store.
        not_run.insert(
            2,
            NotRun(
                "CreateNote on PostgreSQL vs pgbench",
                "≥ 70% of the database's single-row insert rate at the same concurrency",
                no_postgres,
            ),
        )
    return not_run
