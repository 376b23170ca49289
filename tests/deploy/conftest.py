"""Deployment tests: the Dockerfile, the compose stack and the Helm chart, checked against
the real `notesuite` binary since no Docker engine or cluster runs here.

Tools come from the environment, relative to the repository root: NOTESUITE_BIN (default
target/debug/notesuite), HELM (default .tools/helm), and kubernetes-validate and hadolint from
.venv/bin; scripts/install-test-tools installs them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# The PostgreSQL server the tests marked `postgres` make their databases on (as the other
# suites do); scripts/test deselects them, loudly, where no server answers and none is required.
POSTGRES_SERVER = os.environ.get("NOTESUITE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
CHART = REPO_ROOT / "helm" / "notesuite"
DEPLOY = REPO_ROOT / "deploy"
TOOL_TIMEOUT_S = 120


def _tool_path(env_var: str, default: str) -> Path:
    path = Path(os.environ.get(env_var, default))
    return path if path.is_absolute() else REPO_ROOT / path


NOTESUITE_BIN = _tool_path("NOTESUITE_BIN", "target/debug/notesuite")
HELM = _tool_path("HELM", ".tools/helm")
VENV_BIN = REPO_ROOT / ".venv" / "bin"
KUBERNETES_VALIDATE = VENV_BIN / "kubernetes-validate"
HADOLINT = VENV_BIN / "hadolint"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server at NOTESUITE_TEST_POSTGRES")


def run(*args, env: dict[str, str] | None = None, timeout: float = TOOL_TIMEOUT_S) -> subprocess.CompletedProcess:
    for tool in (args[0],):
        if not Path(tool).exists():
            pytest.fail(f"{tool} is missing: run scripts/install-test-tools (and cargo build -p notesuite)")
    return subprocess.run(
        [str(arg) for arg in args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def helm(*args) -> subprocess.CompletedProcess:
    # No repositories, no plugins, no cache from the user's home: the chart alone.
    home = Path(os.environ.get("PYTEST_HELM_HOME", "/tmp/notesuite-helm-home"))
    env = {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return run(HELM, *args, env=env)


def render_args(
    values: list[Path | str] = (), set_files: dict[str, Path] | None = None, sets: dict[str, str] | None = None
) -> list[str]:
    args: list[str] = []
    for file in values:
        args += ["--values", str(file)]
    for key, path in (set_files or {}).items():
        args += ["--set-file", f"{key}={path}"]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render(
    values: list[Path | str] = (),
    set_files: dict[str, Path] | None = None,
    sets: dict[str, str] | None = None,
    release: str = "notesuite",
    namespace: str = "notesuite",
) -> list[dict]:
    """`helm template` of the chart, as parsed documents (hooks and tests included)."""
    result = helm("template", release, CHART, "--namespace", namespace, *render_args(values, set_files, sets))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh key pair from `notesuite keygen`."""
    directory = tmp_path_factory.mktemp("keys")
    result = run(NOTESUITE_BIN, "keygen", "--out-dir", directory)
    assert result.returncode == 0, result.stderr
    return {"private": directory / "jwt-private.pem", "public": directory / "jwt-public.pem"}


@pytest.fixture(scope="session")
def dev_key_files(keys) -> dict[str, Path]:
    """The --set-file arguments the dev profile takes."""
    return {"jwt.privateKey": keys["private"], "jwt.publicKey": keys["public"]}
