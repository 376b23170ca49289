"""Render-and-run: the chart's rendered manifests, run as a kubelet would run them.

From `helm template` of a profile, every Deployment's container is started locally (the
real binary, with the rendered args, env, Secret files and ports; one loopback address per
pod), every rendered probe is made against it, the `helm test` pod's command runs against the
release, and then every pod gets SIGTERM and must turn readiness NOT_SERVING, stay live, and
exit 0 within the rendered terminationGracePeriodSeconds.

The dev profile runs on SQLite; the production profile on the PostgreSQL server at
NOTESUITE_TEST_POSTGRES (default 127.0.0.1:5432, user postgres, trust auth), in two fresh
databases dropped afterwards.
"""

from __future__ import annotations

import base64
import subprocess
import threading
import uuid
from urllib.parse import urlsplit

import pytest

from conftest import CHART, NOTESUITE_BIN, POSTGRES_SERVER, render
from kube import LocalCluster, Objects, OtlpSink, Pod, grpc_probe, scrape, terminate, wait_started

NAMESPACE = "notesuite"
PRODUCTION = CHART / "values-production.yaml"
DEV = CHART / "values-dev.yaml"
_SERVER = urlsplit(POSTGRES_SERVER)
POSTGRES = {
    "host": _SERVER.hostname or "127.0.0.1",
    "port": str(_SERVER.port or 5432),
    "user": _SERVER.username or "postgres",
}
# The collector values-production.yaml names, replaced by a local OTLP sink.
PRODUCTION_COLLECTOR = "opentelemetry-collector.observability.svc.cluster.local:4317"


def run_release(cluster: LocalCluster, replicas: dict[str, int | None]) -> dict:
    """Starts the release, probes it, runs its helm test, terminates it; returns what happened."""
    pods: dict[str, list[Pod]] = {
        component: cluster.add_deployment(f"notesuite-{component}", count) for component, count in replicas.items()
    }
    try:
        for component in ("users", "notes", "gateway"):
            for pod in pods[component]:
                cluster.start(pod)
        for component in ("users", "notes", "gateway"):
            for pod in pods[component]:
                wait_started(pod)
        for pod in cluster.pods:
            container = pod.container
            for kind in ("readinessProbe", "livenessProbe"):
                ok, status = grpc_probe(pod, container[kind])
                assert ok, (
                    f"{pod.name}: rendered {kind} {container[kind]['grpc']} answered {status}:\n{pod.logs()[-3000:]}"
                )
            # What the ServiceMonitor scrapes: the container port named metrics.
            assert "rpc_server_call_duration_seconds" in scrape(pod, "metrics"), pod.name

        # The helm test pod, once per replica: each run reaches a different replica of every
        # service, so every pod answers a signed-up round trip.
        checks = []
        for index in range(max(len(replicas_of) for replicas_of in pods.values())):
            check = cluster.hook_pod("notesuite-check", index)
            result = cluster.run_to_completion(check, check.spec["activeDeadlineSeconds"])
            assert result.returncode == 0, (
                f"helm test pod ({' '.join(check.argv)}) failed:\n{result.stdout}\n{result.stderr}"
            )
            assert "check passed" in result.stdout, result.stdout
            checks.append(result.stdout)
        served = {pod.name: scrape(pod, "metrics") for pod in cluster.pods}

        terminations = {}
        threads = []
        for pod in cluster.pods:
            grace = pod.spec["terminationGracePeriodSeconds"]

            def stop(pod: Pod = pod, grace: int = grace) -> None:
                terminations[pod.name] = (grace, terminate(pod, grace))

            threads.append(threading.Thread(target=stop))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pod in cluster.pods:
            grace, outcome = terminations[pod.name]
            assert outcome.not_serving_after_s is not None, f"{pod.name}: readiness never left SERVING after SIGTERM"
            assert outcome.liveness_while_draining == "SERVING", (
                f"{pod.name}: liveness during the drain: {outcome.liveness_while_draining}"
            )
            assert outcome.exit_code == 0, (
                f"{pod.name}: exit code {outcome.exit_code} after {outcome.seconds:.1f}s "
                f"(grace period {grace}s):\n{pod.logs()[-3000:]}"
            )
        return {"checks": checks, "served": served, "terminations": terminations, "pods": pods}
    finally:
        cluster.stop_all()


def test_dev_profile_runs_as_rendered_on_sqlite(dev_key_files, tmp_path):
    documents = render([DEV], dev_key_files, namespace=NAMESPACE)
    cluster = LocalCluster(Objects(documents), NOTESUITE_BIN, tmp_path, NAMESPACE)
    outcome = run_release(cluster, {"users": None, "notes": None, "gateway": None})
    # The rendered replica count (1) ran; SQLite lived on the pods' emptyDirs.
    assert {component: len(pods) for component, pods in outcome["pods"].items()} == {
        "users": 1,
        "notes": 1,
        "gateway": 1,
    }
    (users,) = outcome["pods"]["users"]
    assert (users.directory / "volumes" / "data" / "users.db").exists()
    assert 'rpc_method="CreateUser"' in outcome["served"][users.name]


def psql(*sql: str, database: str = "postgres") -> None:
    for statement in sql:
        result = subprocess.run(
            [
                "psql",
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "-h",
                POSTGRES["host"],
                "-p",
                POSTGRES["port"],
                "-U",
                POSTGRES["user"],
                "-d",
                database,
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"psql {statement!r}: {result.stderr}"


@pytest.fixture
def postgres_databases():
    """Two fresh databases on the machine's PostgreSQL, dropped after the test."""
    suffix = uuid.uuid4().hex[:12]
    names = {"users": f"notesuite_rr_users_{suffix}", "notes": f"notesuite_rr_notes_{suffix}"}
    psql(*(f'CREATE DATABASE "{name}"' for name in names.values()))
    yield names
    psql(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names.values()))


def opaque_secret(name: str, data: dict[str, bytes]) -> dict:
    """A Secret as `kubectl create secret generic` makes it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


@pytest.mark.postgres
def test_production_profile_runs_as_rendered_on_postgresql_with_two_replicas(keys, postgres_databases, tmp_path):
    documents = render([PRODUCTION], namespace=NAMESPACE)

    def url(database):
        return f"postgres://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{database}".encode()

    # The two Secrets values-production.yaml expects to exist, made as the README says.
    user_created = [
        opaque_secret(
            "notesuite-database",
            {
                "users-database-url": url(postgres_databases["users"]),
                "notes-database-url": url(postgres_databases["notes"]),
            },
        ),
        opaque_secret(
            "notesuite-jwt",
            {"jwt-private.pem": keys["private"].read_bytes(), "jwt-public.pem": keys["public"].read_bytes()},
        ),
    ]
    sink = OtlpSink("127.0.0.1:0")
    try:
        cluster = LocalCluster(
            Objects(documents + user_created),
            NOTESUITE_BIN,
            tmp_path,
            NAMESPACE,
            external={PRODUCTION_COLLECTOR: f"127.0.0.1:{sink.port}"},
        )
        outcome = run_release(cluster, {"users": 2, "notes": 2, "gateway": 2})
    finally:
        sink.stop()
    # Both replicas of every service served calls: the check went through each gateway to
    # each replica of users and notes, which share one database each.
    assert len(outcome["checks"]) == 2
    for component, method in [("users", "CreateUser"), ("notes", "CreateNote"), ("gateway", "SignUp")]:
        for pod in outcome["pods"][component]:
            assert f'rpc_method="{method}"' in outcome["served"][pod.name], f"{pod.name} served no {method}"
    # Traces reached the collector the values name (metrics are scraped, not pushed): the
    # check's round trip carries a sampled trace context, which the ratio sampler keeps.
    assert all("round trip trace id " in check for check in outcome["checks"])
    assert sink.exports.get("/opentelemetry.proto.collector.trace.v1.TraceService/Export"), sink.exports
    assert "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" not in sink.exports
    for name, (grace, termination) in outcome["terminations"].items():
        # values-production.yaml drains for 5s: readiness turned first, the exit came after.
        assert termination.not_serving_after_s < 1.0, (name, termination)
        assert 5.0 <= termination.seconds < grace, (name, termination)
