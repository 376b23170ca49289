"""The PostgreSQL server a benchmark runs on: fresh databases with random names (dropped
afterwards), SQL through psql, pgbench. The server is shared and never stopped or
reconfigured here; its processes are not pinned by the harness (they run on both cores)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
PSQL_TIMEOUT_S = 120


def default_server() -> str:
    """The server the Rust tests use too (crates/database/src/testing)."""
    return os.environ.get("NOTESUITE_TEST_POSTGRES") or DEFAULT_SERVER


def tool(name: str) -> str:
    """psql or pgbench: from PATH, else from the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if not candidates:
        raise FileNotFoundError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin (PostgreSQL client tools)")
    return candidates[-1]


def _version_key(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match.group(1)) if match else 0


def redacted(url: str) -> str:
    """`url` without its password, for reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_database(server: str, name: str) -> str:
    """`server` (a postgres:// URL) with its database replaced by `name`."""
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@dataclass
class Postgres:
    """The server at `server` (a URL naming any database the user may connect to)."""

    server: str
    created: list[str] = field(default_factory=list)

    def check(self) -> str:
        """The server's version; raises with a clear message when it does not answer."""
        try:
            return self.scalar(self.server, "SHOW server_version")
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            where = f"{redacted(self.server)} (--postgres, or NOTESUITE_TEST_POSTGRES)"
            raise RuntimeError(f"PostgreSQL did not answer at {where}: {error}") from error

    def create_database(self, suffix: str) -> str:
        """A new empty database (notesuite_bench_<random>_<suffix>); returns its URL."""
        name = f"notesuite_bench_{uuid.uuid4().hex[:12]}_{suffix}"
        # The name is ours (hex and a fixed suffix), not input: safe to splice.
        self.sql(self.server, f"CREATE DATABASE {name}")
        self.created.append(name)
        return with_database(self.server, name)

    def drop_database(self, url: str) -> None:
        """Drops one database this object created."""
        name = urlsplit(url).path.lstrip("/")
        if name not in self.created:
            raise ValueError(f"{name} was not created by this benchmark: not dropping it")
        self.sql(self.server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.created.remove(name)

    def drop_all(self) -> list[str]:
        """Drops every database this object created (FORCE ends sessions left open); returns
        what could not be dropped."""
        failed = []
        for name in reversed(self.created):
            try:
                self.sql(self.server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                failed.append(f"{name}: {error}")
        self.created.clear()
        return failed

    @contextlib.contextmanager
    def session(self) -> Iterator[Postgres]:
        try:
            yield self
        finally:
            for problem in self.drop_all():
                print(f"bench: could not drop PostgreSQL database {problem}", flush=True)

    def sql(self, url: str, script: str) -> str:
        """Runs `script` with psql (stopping at the first error); returns its unaligned output."""
        completed = subprocess.run(
            [tool("psql"), "--no-psqlrc", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
            input=script,
            capture_output=True,
            text=True,
            timeout=PSQL_TIMEOUT_S,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"psql failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
        return completed.stdout

    def scalar(self, url: str, query: str) -> str:
        return self.sql(url, query).strip()

    def wal_lsn_bytes(self) -> int:
        """The server's current WAL insert position in bytes (cluster-wide)."""
        return int(self.scalar(self.server, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


def migration_sql(repo_root: Path) -> str:
    """The notes service's PostgreSQL schema, as its migrations create it."""
    files = sorted((repo_root / "crates/notes/migrations/postgres").glob("*.sql"))
    if not files:
        raise FileNotFoundError("no migrations in crates/notes/migrations/postgres")
    return "\n".join(path.read_text() for path in files)
