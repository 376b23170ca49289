"""The Helm chart: lint, render, strict schema validation, the values schema, and what the
rendered objects promise (security, drain timing, where the keys go, what rolls the pods)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import CHART, KUBERNETES_VALIDATE, helm, render, render_args, run
from kube import secret_data

PRODUCTION = CHART / "values-production.yaml"
DEV = CHART / "values-dev.yaml"
TLS = CHART / "test-values" / "tls.yaml"
BAD_VALUES = sorted((CHART / "test-values" / "bad").glob("*.yaml"))
COMPONENTS = ("users", "notes", "gateway")
GRPC_SERVICES = {
    "users": "notesuite.users.v1.UsersService",
    "notes": "notesuite.notes.v1.NotesService",
    "gateway": "notesuite.gateway.v1.GatewayService",
}


@pytest.fixture(params=["default", "production", "dev", "tls"])
def profile(request, dev_key_files):
    """(name, values files, --set-file arguments) of each profile the chart ships, and the
    production profile with TLS and mTLS on."""
    return {
        "default": ("default", [], {}),
        "production": ("production", [PRODUCTION], {}),
        "dev": ("dev", [DEV], dev_key_files),
        "tls": ("tls", [PRODUCTION, TLS], {}),
    }[request.param]


def of_kind(documents, kind):
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def deployments(documents):
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in documents
        if doc["kind"] == "Deployment"
    }


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_chart_lints_strictly(profile):
    _, values, set_files = profile
    result = helm("lint", "--strict", CHART, *render_args(values, set_files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_every_rendered_document_passes_strict_kubernetes_validation(profile, tmp_path):
    name, values, set_files = profile
    documents = render(values, set_files)
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    result = run(KUBERNETES_VALIDATE, "--strict", manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^INFO .* passed for resource (\S+) ", result.stdout, re.MULTILINE)
    missing_schema = re.findall(r"Couldn't find schema for kind (\S+)", result.stdout + result.stderr)
    # Only the prometheus-operator CRD has no schema here; it gets its own test below.
    assert set(missing_schema) <= {"ServiceMonitor"}, result.stdout
    assert len(passed) + len(missing_schema) == len(documents), result.stdout


def test_default_and_production_profiles_render_the_objects_the_issue_lists():
    def kinds(documents):
        return sorted({doc["kind"] for doc in documents})

    assert kinds(render()) == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    production = render([PRODUCTION])
    assert kinds(production) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    # HPA on: the autoscaler owns the replica count, so the Deployments leave it out.
    for component, deployment in deployments(production).items():
        assert "replicas" not in deployment["spec"], component
    for hpa in of_kind(production, "HorizontalPodAutoscaler").values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["minReplicas"] == 3
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]


def test_service_monitor_scrapes_the_metrics_port_of_every_service():
    documents = render([PRODUCTION])
    (monitor,) = of_kind(documents, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    selected = [
        service
        for service in of_kind(documents, "Service").values()
        if all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    components = sorted(service["metadata"]["labels"]["app.kubernetes.io/component"] for service in selected)
    assert components == ["gateway", "notes", "users"]
    by_component = deployments(documents)
    for service in selected:
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        pod_ports = container(by_component[service["metadata"]["labels"]["app.kubernetes.io/component"]])["ports"]
        (pod_port,) = [p for p in pod_ports if p["name"] == port["targetPort"]]
        env = configmap_env(documents, service["metadata"]["labels"]["app.kubernetes.io/component"])
        assert env["NOTESUITE_METRICS_LISTEN"].endswith(f":{pod_port['containerPort']}")
    # /metrics is not on the gateway's (public) Service.
    gateway = of_kind(documents, "Service")["notesuite-gateway"]
    assert [p["name"] for p in gateway["spec"]["ports"]] == ["grpc"]
    assert gateway["spec"]["type"] == "LoadBalancer"


def configmap_env(documents, component):
    return of_kind(documents, "ConfigMap")[f"notesuite-{component}"]["data"]


def test_users_and_notes_services_are_headless_and_the_gateway_dials_them_by_name():
    documents = render()
    services = of_kind(documents, "Service")
    for component in ("users", "notes"):
        service = services[f"notesuite-{component}"]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is False
    gateway_env = configmap_env(documents, "gateway")
    # The headless Service's full name; its A records are the ready pods.
    assert gateway_env["NOTESUITE_USERS_URL"] == "http://notesuite-users.notesuite.svc.cluster.local:50051"
    assert gateway_env["NOTESUITE_NOTES_URL"] == "http://notesuite-notes.notesuite.svc.cluster.local:50052"


def test_termination_grace_period_is_derived_from_the_drain_settings():
    sets = {"drain.delaySeconds": "7", "drain.shutdownGraceSeconds": "11", "drain.terminationMarginSeconds": "3"}
    documents = render(sets=sets)
    for component, deployment in deployments(documents).items():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 21, component
        env = configmap_env(documents, component)
        assert (env["NOTESUITE_DRAIN_DELAY"], env["NOTESUITE_SHUTDOWN_GRACE"]) == ("7s", "11s")


@pytest.mark.parametrize("component", COMPONENTS)
def test_probes_are_native_grpc_on_the_names_the_binary_serves(component):
    documents = render()
    deployment = deployments(documents)[component]
    probes = container(deployment)
    (grpc_port,) = [p["containerPort"] for p in probes["ports"] if p["name"] == "grpc"]
    assert probes["readinessProbe"]["grpc"] == {"port": grpc_port, "service": GRPC_SERVICES[component]}
    assert probes["livenessProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}
    assert probes["startupProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}
    assert configmap_env(documents, component)["NOTESUITE_LISTEN"] == f"0.0.0.0:{grpc_port}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_with_tls_the_probes_run_notesuite_health_over_tls_with_the_mounted_certificates(component):
    # The kubelet's gRPC probe speaks plaintext only: a TLS port is probed by the binary.
    documents = render([PRODUCTION, TLS])
    deployment = deployments(documents)[component]
    probes = container(deployment)
    public, internal = "/etc/notesuite/tls/public", "/etc/notesuite/tls/internal"
    for probe, service in [
        ("startupProbe", "liveness"),
        ("readinessProbe", GRPC_SERVICES[component]),
        ("livenessProbe", "liveness"),
    ]:
        command = probes[probe]["exec"]["command"]
        assert "grpc" not in probes[probe], probe
        assert command[:4] == ["/usr/local/bin/notesuite", "health", "--service", service], command
        flags = dict(zip(command[4::2], command[5::2], strict=True))
        assert flags["--timeout"] == "2s"
        if component == "gateway":
            assert flags["--tls-ca"] == f"{public}/ca.crt"
            assert flags["--tls-server-name"] == "notes.example.com"
            assert "--tls-cert" not in flags
        else:
            # The name its certificate must carry: its Service's.
            assert flags["--tls-server-name"] == f"notesuite-{component}.notesuite.svc.cluster.local"
            assert (flags["--tls-ca"], flags["--tls-cert"], flags["--tls-key"]) == (
                f"{internal}/ca.crt",
                f"{internal}/tls.crt",
                f"{internal}/tls.key",
            )
    # Whole Secrets, no items or subPath: a rotated Secret reaches the files the process reloads.
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in probes["volumeMounts"]}
    expected = {"tls-internal": "notesuite-gateway-tls" if component == "gateway" else f"notesuite-{component}-tls"}
    if component == "gateway":
        expected["tls-public"] = "notesuite-gateway-public-tls"
    for name, secret in expected.items():
        assert volumes[name]["secret"]["secretName"] == secret
        assert "items" not in volumes[name]["secret"]
        assert "subPath" not in mounts[name] and mounts[name]["readOnly"] is True
    assert ("tls-public" in volumes) == (component == "gateway")
    env = configmap_env(documents, component)
    if component == "gateway":
        assert env["NOTESUITE_TLS_CERT"] == f"{public}/tls.crt"
        assert env["NOTESUITE_BACKEND_CERT"] == f"{internal}/tls.crt"
        assert env["NOTESUITE_USERS_URL"].startswith("https://notesuite-users.")
        assert env["NOTESUITE_NOTES_URL"].startswith("https://notesuite-notes.")
    else:
        assert env["NOTESUITE_TLS_CLIENT_CA"] == f"{internal}/ca.crt"
        assert env["NOTESUITE_TLS_CERT"] == f"{internal}/tls.crt"


def test_with_tls_helm_test_checks_the_gateway_over_tls_and_users_and_notes_over_mtls():
    (check,) = of_kind(render([PRODUCTION, TLS]), "Pod").values()
    args = check["spec"]["containers"][0]["args"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags["--tls-ca"] == "/etc/notesuite/tls/public/ca.crt"
    assert flags["--tls-server-name"] == "notes.example.com"
    assert flags["--backend-cert"] == "/etc/notesuite/tls/internal/tls.crt"
    volumes = {v["name"]: v["secret"]["secretName"] for v in check["spec"]["volumes"]}
    assert volumes == {"tls-public": "notesuite-gateway-public-tls", "tls-internal": "notesuite-gateway-tls"}
    # Without TLS nothing changes.
    (plain,) = of_kind(render(), "Pod").values()
    assert "--tls-ca" not in plain["spec"]["containers"][0]["args"]
    assert "volumes" not in plain["spec"]


def test_probe_timings_are_values_a_user_overrides():
    documents = render(
        sets={"notes.probes.readiness.periodSeconds": "3", "notes.probes.liveness.failureThreshold": "9"}
    )
    probes = container(deployments(documents)["notes"])
    assert probes["readinessProbe"]["periodSeconds"] == 3
    assert probes["livenessProbe"]["failureThreshold"] == 9


def test_the_private_key_is_mounted_into_the_gateway_only(dev_key_files):
    documents = render([DEV], dev_key_files)
    for component, deployment in deployments(documents).items():
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        keys = [item["key"] for volume in volumes if "secret" in volume for item in volume["secret"]["items"]]
        assert keys == (["jwt-private.pem"] if component == "gateway" else ["jwt-public.pem"]), component
    (secret,) = [s for s in of_kind(documents, "Secret").values()]
    data = secret_data(secret)
    assert data["jwt-private.pem"] == Path(dev_key_files["jwt.privateKey"]).read_bytes()


def test_rotation_secrets_are_mounted_whole_and_read_as_key_directories():
    documents = render(
        [PRODUCTION],
        sets={"jwt.privateKeysSecret": "jwt-private-keys", "jwt.publicKeysSecret": "jwt-public-keys"},
    )
    for component, deployment in deployments(documents).items():
        volumes = {
            volume["name"]: volume["secret"]
            for volume in deployment["spec"]["template"]["spec"]["volumes"]
            if volume["name"].startswith("jwt-")
        }
        expected = {"jwt-public": "jwt-public-keys"}
        if component == "gateway":
            expected["jwt-private"] = "jwt-private-keys"
        assert {name: secret["secretName"] for name, secret in volumes.items()} == expected, component
        # Whole Secrets: a key added for a rotation appears as a file in the directory.
        assert all("items" not in secret for secret in volumes.values()), component
        mounts = {mount["name"]: mount for mount in container(deployment)["volumeMounts"]}
        assert all("subPath" not in mounts[name] for name in volumes), component
        data = of_kind(documents, "ConfigMap")[f"notesuite-{component}"]["data"]
        assert data["NOTESUITE_JWT_PUBLIC_KEY"] == "/etc/notesuite/jwt-public", component
        if component == "gateway":
            assert data["NOTESUITE_JWT_PRIVATE_KEY"] == "/etc/notesuite/jwt-private"


def test_the_admission_limit_is_sized_from_the_pool_unless_set():
    for documents, expected in (
        (render([PRODUCTION]), "pool"),
        (render(), "pool"),
        (render(sets={"concurrencyLimit": "fixed"}), "fixed"),
    ):
        for component in COMPONENTS:
            assert configmap_env(documents, component)["NOTESUITE_CONCURRENCY_LIMIT"] == expected, component


@pytest.mark.parametrize("component", COMPONENTS)
def test_pods_run_locked_down(component):
    deployment = deployments(render([PRODUCTION]))[component]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    resources = container(deployment)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["limits"])
    # Spread over zones and nodes.
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]


def test_database_urls_are_files_from_the_secret_each_service_seeing_only_its_own():
    documents = render([PRODUCTION])
    for component in ("users", "notes"):
        deployment = deployments(documents)[component]
        env = configmap_env(documents, component)
        assert "NOTESUITE_DATABASE_URL" not in env
        assert "NOTESUITE_DATABASE_URL" not in {e["name"] for e in container(deployment).get("env", [])}
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "database-url"]
        assert volume["secret"]["secretName"] == "notesuite-database"
        assert volume["secret"]["items"] == [{"key": f"{component}-database-url", "path": "database-url"}]
        (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "database-url"]
        assert env["NOTESUITE_DATABASE_URL_FILE"] == f"{mount['mountPath']}/database-url"
    gateway = deployments(documents)["gateway"]
    assert "database-url" not in {v["name"] for v in gateway["spec"]["template"]["spec"]["volumes"]}


def checksums(documents):
    return {
        component: {
            k: v for k, v in d["spec"]["template"]["metadata"]["annotations"].items() if k.startswith("checksum/")
        }
        for component, d in deployments(documents).items()
    }


def test_a_config_change_rolls_only_the_pods_it_concerns(dev_key_files):
    before = checksums(render([DEV], dev_key_files))
    after = checksums(render([DEV], dev_key_files, sets={"gateway.defaultDeadline": "20s"}))
    assert after["gateway"]["checksum/config"] != before["gateway"]["checksum/config"]
    assert after["users"] == before["users"] and after["notes"] == before["notes"]
    inline = {
        "database.driver": "postgres",
        "database.existingSecret": "",
        "database.notesUrl": "postgres://n@db/notes",
    }
    first = checksums(
        render(
            [DEV], dev_key_files, sets={**inline, "database.usersUrl": "postgres://u@db/users", "users.replicas": "1"}
        )
    )
    second = checksums(
        render(
            [DEV], dev_key_files, sets={**inline, "database.usersUrl": "postgres://u@db2/users", "users.replicas": "1"}
        )
    )
    assert first["users"]["checksum/database"] != second["users"]["checksum/database"]
    assert first["notes"] == second["notes"] and first["gateway"] == second["gateway"]


def test_network_policies_let_only_the_gateway_and_the_check_reach_users_and_notes():
    documents = render([PRODUCTION])
    policies = of_kind(documents, "NetworkPolicy")
    for component in ("users", "notes"):
        policy = policies[f"notesuite-{component}"]["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        grpc_rule = next(rule for rule in policy["ingress"] if rule["ports"] == [{"port": "grpc", "protocol": "TCP"}])
        callers = sorted(
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in grpc_rule["from"]
        )
        assert callers == ["check", "gateway"]
        egress_ports = sorted(port["port"] for rule in policy["egress"] for port in rule["ports"])
        # DNS (UDP and TCP), the collector, the database: nothing else.
        assert egress_ports == [53, 53, 4317, 5432]
    gateway = policies["notesuite-gateway"]["spec"]
    assert sorted(port["port"] for rule in gateway["egress"] for port in rule["ports"]) == [53, 53, 4317, 50051, 50052]
    # The helm test pod carries the label the policies admit.
    (check,) = of_kind(documents, "Pod").values()
    assert check["metadata"]["labels"]["app.kubernetes.io/component"] == "check"


def test_helm_test_pod_runs_notesuite_check_against_the_release():
    (check,) = of_kind(render(), "Pod").values()
    assert check["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert check["spec"]["restartPolicy"] == "Never"
    (only,) = check["spec"]["containers"]
    assert only["args"][0] == "check"
    assert "--gateway" in only["args"] and "--users" in only["args"] and "--notes" in only["args"]


def test_the_schema_accepts_valid_kubernetes_fields_it_passes_through(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "users": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "notesuite", "effect": "NoSchedule"}
                    ],
                    "extraEnv": [
                        {"name": "RUST_BACKTRACE", "value": "1"},
                        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    ],
                    "podAnnotations": {"example.com/team": "notes"},
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                        "limits": {"memory": "1Gi"},
                    },
                    "podDisruptionBudget": {"enabled": True, "minAvailable": "50%"},
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 2,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "users"}},
                        }
                    ],
                },
                "podSecurityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 20000,
                    "fsGroup": 20000,
                    "fsGroupChangePolicy": "OnRootMismatch",
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "gateway": {"service": {"type": "NodePort", "nodePort": 30050, "externalTrafficPolicy": "Local"}},
                "networkPolicy": {
                    "gatewayFrom": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]
                },
                "image": {"digest": "sha256:" + "a" * 64},
            }
        )
    )
    documents = render([extra])
    manifest = tmp_path / "extra-rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    result = run(KUBERNETES_VALIDATE, "--strict", manifest)
    assert result.returncode == 0, result.stdout
    users = deployments(documents)["users"]
    assert container(users)["image"] == "notesuite:0.1.0@sha256:" + "a" * 64
    assert of_kind(documents, "PodDisruptionBudget")["notesuite-users"]["spec"]["minAvailable"] == "50%"


@pytest.mark.parametrize("bad_values", BAD_VALUES, ids=lambda path: path.stem)
def test_the_schema_rejects_bad_values_naming_the_value(bad_values):
    expected = re.findall(r"^# expect: (.+)$", bad_values.read_text(), re.MULTILINE)
    assert expected, f"{bad_values.name} says nothing it expects"
    result = helm("template", "notesuite", CHART, "--values", bad_values)
    assert result.returncode != 0, f"{bad_values.name} was accepted"
    for message in expected:
        assert message in result.stderr, f"{bad_values.name}: {message!r} not in:\n{result.stderr}"


def test_notes_tell_the_user_how_to_reach_the_release_with_grpcurl():
    result = helm("install", "notesuite", CHART, "--namespace", "notes-prod", "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl --namespace notes-prod port-forward service/notesuite-gateway 50050:50050" in notes
    assert "grpcurl -plaintext localhost:50050 list" in notes
    assert "helm test notesuite --namespace notes-prod" in notes
    # The Secrets to create first, with the names and keys the pods read.
    assert "create secret generic notesuite-jwt" in notes
    assert "--from-literal=users-database-url=" in notes


def test_readme_documents_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def leaves(tree, prefix=""):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if (
                isinstance(value, dict)
                and value
                and key not in {"resources", "podSecurityContext", "securityContext"}
                and not key.endswith("probes")
            ):
                yield from leaves(value, path + ".")
            else:
                yield path

    def documented(path):
        # A setting every service has is documented once, as SERVICE.setting.
        generic = re.sub(r"^(users|notes|gateway)\.", "SERVICE.", path)
        return f"`{path}`" in readme or f"`{generic}`" in readme

    undocumented = [path for path in leaves(values) if not documented(path)]
    assert not undocumented, f"helm/notesuite/README.md does not mention {undocumented}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_variable_the_chart_sets_is_one_the_binary_reads(component, dev_key_files):
    # clap ignores a variable it does not know: a typo would pass the render-and-run unseen.
    from test_compose import help_text, telemetry_variables

    documented = help_text(component)
    known_otel = telemetry_variables()
    for values, set_files in [([PRODUCTION], {}), ([DEV], dev_key_files), ([PRODUCTION, TLS], {})]:
        documents = render(values, set_files)
        names = set(configmap_env(documents, component))
        names |= {entry["name"] for entry in container(deployments(documents)[component]).get("env", [])}
        for name in names:
            if name.startswith("NOTESUITE_"):
                assert f"[env: {name}=" in documented, f"notesuite {component} reads no {name}"
            elif name.startswith("OTEL_"):
                assert name in known_otel, f"{name} is not a variable notesuite reads"
            else:
                # The downward-API values OTEL_RESOURCE_ATTRIBUTES is built from, and RUST_LOG.
                assert name in {"RUST_LOG", "POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"}, name
