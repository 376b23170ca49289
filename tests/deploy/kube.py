"""Rendered Kubernetes manifests, run on this machine the way a kubelet would run them.

No cluster is needed: each Deployment's container becomes local processes of the real
`notesuite` binary, one per replica, each on its own loopback address (127.x.y.z instead of a
pod IP), with the container's command and args, its environment resolved from the rendered
ConfigMaps and Secrets (envFrom, secretKeyRef, fieldRef, `$(VAR)` expansion), its Secret and
emptyDir volumes written to a temporary directory and every mount path mapped there, and the
Services' DNS names mapped to the addresses of the pods they select. Whatever the manifests
get wrong that a kubelet would trip over (a missing Secret key, a path outside every mount, a
probe on a port the container does not declare, a headless Service whose port is not the
container's) fails here with a message naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# What the image runs when a container sets no `command` (deploy/Dockerfile ENTRYPOINT); the
# Dockerfile test checks that the two agree.
IMAGE_ENTRYPOINT = ["/usr/local/bin/notesuite"]
IMAGE_CMD = ["--help"]
IMAGE_WORKDIR = "/var/lib/notesuite"
# Where every start and stop is bounded, so that a hang fails the test instead of the run.
STARTUP_LIMIT_S = 60


class ManifestError(AssertionError):
    """Something in the rendered objects a kubelet would refuse or trip over."""


@dataclass
class Objects:
    """Rendered objects, plus any the test adds (the Secrets a user creates by hand)."""

    documents: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [doc for doc in self.documents if doc.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise ManifestError(f"no {kind} named {name!r} among the rendered objects")

    def find(self, kind: str, name: str) -> dict | None:
        try:
            return self.get(kind, name)
        except ManifestError:
            return None


def secret_data(secret: dict) -> dict[str, bytes]:
    data = {key: b64decode(value) for key, value in (secret.get("data") or {}).items()}
    data.update({key: value.encode() for key, value in (secret.get("stringData") or {}).items()})
    return data


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass
class Pod:
    """One replica: a process running a rendered pod spec."""

    name: str
    ip: str
    spec: dict
    labels: dict
    namespace: str
    directory: Path
    # Which replica of each Service this pod's DNS names resolve to (see _endpoint).
    index: int = 0
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def container(self) -> dict:
        containers = self.spec["containers"]
        if len(containers) != 1:
            raise ManifestError(f"{self.name}: expected one container, found {len(containers)}")
        return containers[0]

    def container_port(self, port: int | str) -> int:
        """A port as the container declares it: a number it lists, or one of its names."""
        declared = self.container.get("ports", [])
        for entry in declared:
            if port in (entry["containerPort"], entry.get("name")):
                return entry["containerPort"]
        raise ManifestError(f"{self.name}: port {port!r} is not one of its containerPorts {declared}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


class LocalCluster:
    """Runs the pods of rendered Deployments (and hook Pods) as local processes."""

    def __init__(
        self,
        objects: Objects,
        binary: Path,
        workdir: Path,
        namespace: str,
        cluster_domain: str = "cluster.local",
        external: dict[str, str] | None = None,
    ):
        """`external` maps addresses outside the release (`host:port` of the database or the
        collector) to the local stand-ins the test runs."""
        self.external = dict(external or {})
        self.objects = objects
        self.binary = binary
        self.workdir = workdir
        self.namespace = namespace
        self.cluster_domain = cluster_domain
        # A /16 of loopback of our own: other tests on this machine use 127.0.0.1.
        self._subnet = f"127.{os.getpid() % 200 + 20}.{uuid.uuid4().int % 250 + 1}"
        self._next_host = 1
        self.pods: list[Pod] = []

    # --- Pods ------------------------------------------------------------------------------

    def add_deployment(self, name: str, replicas: int | None = None) -> list[Pod]:
        """Plans the pods of a Deployment: its rendered replicas unless given (an HPA-managed
        Deployment renders none)."""
        deployment = self.objects.get("Deployment", name)
        spec = deployment["spec"]
        count = replicas if replicas is not None else spec.get("replicas")
        if count is None:
            raise ManifestError(f"Deployment {name} has no replicas (HPA-managed): say how many to run")
        template = spec["template"]
        labels = template["metadata"]["labels"]
        if not selects(spec["selector"]["matchLabels"], labels):
            raise ManifestError(f"Deployment {name}: its selector does not match its pod labels")
        pods = [self._plan(f"{name}-{index}", template["spec"], labels, index) for index in range(count)]
        self.pods.extend(pods)
        return pods

    def hook_pod(self, name: str, index: int = 0) -> Pod:
        """A Pod object (the helm test hook); `index` picks which replicas its names reach."""
        pod = self.objects.get("Pod", name)
        return self._plan(f"{name}-{index}", pod["spec"], pod["metadata"].get("labels", {}), index)

    def _plan(self, name: str, spec: dict, labels: dict, index: int) -> Pod:
        ip = f"{self._subnet}.{self._next_host}"
        self._next_host += 1
        directory = self.workdir / name
        directory.mkdir(parents=True)
        return Pod(name, ip, spec, labels, self.namespace, directory, index)

    def prepare(self, pod: Pod) -> None:
        """Resolves the pod's volumes, environment and command, as the kubelet does at start."""
        container = pod.container
        mounts = self._mount_volumes(pod)
        env = self._environment(pod)
        command = container.get("command") or IMAGE_ENTRYPOINT
        args = container.get("args") if "args" in container else (IMAGE_CMD if "command" not in container else [])
        argv = [expand(part, env) for part in [*command, *args]]
        if argv[0] != IMAGE_ENTRYPOINT[0]:
            raise ManifestError(f"{pod.name}: runs {argv[0]!r}, which the image does not have")

        # Inside the pod, 0.0.0.0 is every address of the pod; here it is the pod's own.
        def rewrite(value: str) -> str:
            return self._map_hosts(pod, map_paths(value.replace("0.0.0.0:", f"{pod.ip}:"), mounts))

        pod.argv = [str(self.binary), *[rewrite(part) for part in argv[1:]]]
        pod.env = {key: rewrite(value) for key, value in env.items()}
        for value in [*pod.argv[1:], *pod.env.values()]:
            unmapped = unmapped_path(value, mounts)
            if unmapped:
                raise ManifestError(
                    f"{pod.name}: {unmapped!r} is on the read-only root filesystem (no volume is mounted there)"
                )
        working_dir = container.get("workingDir", IMAGE_WORKDIR)
        pod.cwd = (
            Path(map_paths(working_dir, mounts)) if map_paths(working_dir, mounts) != working_dir else pod.directory
        )

    def _mount_volumes(self, pod: Pod) -> dict[str, str]:
        volumes = {volume["name"]: volume for volume in pod.spec.get("volumes", [])}
        mounts: dict[str, str] = {}
        for mount in pod.container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ManifestError(f"{pod.name}: volumeMount {mount['name']!r} names no volume")
            host = pod.directory / "volumes" / mount["name"]
            if not host.exists():
                host.mkdir(parents=True)
                self._fill(pod, volume, host)
            target = host / mount["subPath"] if mount.get("subPath") else host
            mounts[mount["mountPath"].rstrip("/")] = str(target)
        return mounts

    def _fill(self, pod: Pod, volume: dict, host: Path) -> None:
        if "emptyDir" in volume:
            return
        if "secret" in volume:
            source = volume["secret"]
            secret = self.objects.find("Secret", source["secretName"])
            if secret is None:
                if source.get("optional"):
                    return
                raise ManifestError(
                    f"{pod.name}: volume {volume['name']!r} needs Secret {source['secretName']!r}, which does not exist"
                )
            data = secret_data(secret)
        elif "configMap" in volume:
            source = volume["configMap"]
            config_map = self.objects.get("ConfigMap", source["name"])
            data = {key: value.encode() for key, value in config_map.get("data", {}).items()}
        else:
            raise ManifestError(f"{pod.name}: volume {volume['name']!r} is of a kind this harness does not run")
        default_mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                raise ManifestError(
                    f"{pod.name}: volume {volume['name']!r} wants key {item['key']!r}, which the object lacks"
                )
            path = host / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            mode = item.get("mode", default_mode)
            path.chmod(mode)
            # The kubelet writes Secret files as root, group fsGroup: a non-root container
            # reads them through the group or world bits only.
            security = pod.spec.get("securityContext", {})
            readable = mode & 0o004 or (mode & 0o040 and security.get("fsGroup") is not None)
            if security.get("runAsUser", 0) != 0 and not readable:
                raise ManifestError(
                    f"{pod.name}: {item['path']} (mode {mode:o}) is unreadable for uid {security['runAsUser']}"
                )

    def _environment(self, pod: Pod) -> dict[str, str]:
        container = pod.container
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.objects.get("ConfigMap", source["configMapRef"]["name"]).get("data", {})
            else:
                data = {
                    k: v.decode()
                    for k, v in secret_data(self.objects.get("Secret", source["secretRef"]["name"])).items()
                }
            env.update({prefix + key: value for key, value in data.items()})
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = expand(entry["value"], env)
                continue
            reference = entry["valueFrom"]
            if "fieldRef" in reference:
                env[entry["name"]] = self._field(pod, reference["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in reference:
                ref = reference["secretKeyRef"]
                secret = self.objects.find("Secret", ref["name"])
                data = secret_data(secret) if secret else {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise ManifestError(
                        f"{pod.name}: env {entry['name']} needs key {ref['key']!r} of Secret {ref['name']!r}, "
                        "which is missing"
                    )
                env[entry["name"]] = data[ref["key"]].decode()
            elif "configMapKeyRef" in reference:
                ref = reference["configMapKeyRef"]
                env[entry["name"]] = self.objects.get("ConfigMap", ref["name"])["data"][ref["key"]]
            else:
                raise ManifestError(
                    f"{pod.name}: env {entry['name']} uses {list(reference)}, which this harness does not run"
                )
        return env

    def _field(self, pod: Pod, path: str) -> str:
        fields = {
            "metadata.name": pod.name,
            "metadata.namespace": pod.namespace,
            "metadata.uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, pod.name)),
            "spec.nodeName": "local-node",
            "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
            "status.podIP": pod.ip,
        }
        if path not in fields:
            raise ManifestError(f"{pod.name}: fieldRef {path} is not one this harness knows")
        return fields[path]

    def _map_hosts(self, pod: Pod, value: str) -> str:
        """Service DNS names (with their port) to the address of a pod they select."""
        for address, local in self.external.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(address)}(?![\w.-])", local, value)
        for service in self.objects.of_kind("Service"):
            name = service["metadata"]["name"]
            namespace = service["metadata"].get("namespace", self.namespace)
            names = [f"{name}.{namespace}.svc.{self.cluster_domain}", f"{name}.{namespace}.svc", f"{name}.{namespace}"]

            def endpoint(match: re.Match, service: dict = service) -> str:
                return self._endpoint(pod, service, match.group(1))

            for dns_name in names:
                pattern = re.compile(rf"(?<![\w.-]){re.escape(dns_name)}(?::(\d+))?(?![\w.-])")
                value = pattern.sub(endpoint, value)
            # A bare name only with a port: Deployments and Services share names, and
            # `k8s.deployment.name=NAME` is no address.
            pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}:(\d+)(?![\w.-])")
            value = pattern.sub(endpoint, value)
        return value

    def _endpoint(self, client: Pod, service: dict, port: str | None) -> str:
        name = service["metadata"]["name"]
        backends = [p for p in self.pods if selects(service["spec"]["selector"], p.labels)]
        if not backends:
            raise ManifestError(f"Service {name} selects no pod")
        # A name resolves to every ready pod, but one process here dials one address (and the
        # gateway dials one until DNS-based discovery lands): replica i of a client reaches
        # replica i of each backend, so that with as many clients as replicas every replica
        # serves real calls.
        backend = backends[client.index % len(backends)]
        if port is None:
            return backend.ip
        for entry in service["spec"]["ports"]:
            if entry["port"] == int(port):
                target = backend.container_port(entry.get("targetPort", entry["port"]))
                if service["spec"].get("clusterIP") == "None" and target != entry["port"]:
                    raise ManifestError(
                        f"headless Service {name}: port {entry['port']} is dialled at the pod, which serves {target}"
                    )
                return f"{backend.ip}:{target}"
        raise ManifestError(f"Service {name} has no port {port}")

    # --- Running ---------------------------------------------------------------------------

    def start(self, pod: Pod) -> None:
        self.prepare(pod)
        pod.log_path = pod.directory / "stderr.log"
        with open(pod.log_path, "wb") as log:
            pod.process = subprocess.Popen(
                pod.argv, env=pod.env, cwd=pod.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def run_to_completion(self, pod: Pod, deadline_s: float) -> subprocess.CompletedProcess:
        self.prepare(pod)
        return subprocess.run(
            pod.argv, env=pod.env, cwd=pod.cwd, capture_output=True, text=True, timeout=deadline_s, check=False
        )

    def stop_all(self) -> None:
        for pod in self.pods:
            if pod.process and pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait()

    def describe(self, pod: Pod) -> str:
        return f"{pod.name} ({shlex.join(pod.argv)})\n{pod.logs()[-3000:]}"


# --- Values inside a container -------------------------------------------------------------

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, others left as written."""
    return _REFERENCE.sub(lambda match: env.get(match.group(1), match.group(0)), value)


def map_paths(value: str, mounts: dict[str, str]) -> str:
    """Container paths to host paths, in one pass: a host path (often under /tmp) is never
    mapped again by a mount at /tmp."""
    if not mounts:
        return value
    alternatives = "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])({alternatives})(?=/|$|[^\w.-])")
    return pattern.sub(lambda match: mounts[match.group(1)], value)


_ABSOLUTE = re.compile(r"(?:^|(?<=://)|(?<==))(/(?:etc|var|srv|data|run|home|opt|usr|tmp)(?:/[\w.@-]+)*)")


def unmapped_path(value: str, mounts: dict[str, str]) -> str | None:
    """A container path in `value` that no volume holds (the host paths are already mapped)."""
    for match in _ABSOLUTE.finditer(value):
        path = match.group(1)
        if any(path.startswith(host) for host in mounts.values()):
            continue
        return path
    return None


# --- Probes and signals -------------------------------------------------------------------


def grpc_probe(pod: Pod, probe: dict) -> tuple[bool, str]:
    """One run of a native gRPC probe, as the kubelet makes it: Check(service) at the pod's
    address and the probe's port, within timeoutSeconds."""
    action = probe["grpc"]
    port = pod.container_port(action["port"])
    service = action.get("service", "")
    with grpc.insecure_channel(f"{pod.ip}:{port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=probe.get("timeoutSeconds", 1)
            )
        except grpc.RpcError as error:
            return False, f"{error.code().name}: {error.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == SERVING, status


def wait_started(pod: Pod) -> None:
    """The startup probe, run as the kubelet does: every periodSeconds, failureThreshold times."""
    probe = pod.container["startupProbe"]
    attempts = probe.get("failureThreshold", 3)
    period = probe.get("periodSeconds", 10)
    # The kubelet's budget, tried more often than every period so that the test is quick.
    budget = probe.get("initialDelaySeconds", 0) + attempts * period
    deadline = time.monotonic() + min(budget, STARTUP_LIMIT_S)
    outcome = "not tried"
    while time.monotonic() < deadline:
        if pod.process.poll() is not None:
            raise AssertionError(
                f"{pod.name} exited with {pod.process.returncode} while starting:\n{pod.logs()[-3000:]}"
            )
        ok, outcome = grpc_probe(pod, probe)
        if ok:
            return
        time.sleep(0.1)
    raise AssertionError(f"{pod.name}: startup probe still failing after {budget}s ({outcome}):\n{pod.logs()[-3000:]}")


class ReadinessWatch:
    """Watches the readiness probe's health name; records when it stops being SERVING."""

    def __init__(self, pod: Pod):
        probe = pod.container["readinessProbe"]["grpc"]
        self.channel = grpc.insecure_channel(f"{pod.ip}:{pod.container_port(probe['port'])}")
        self.statuses: list[tuple[float, int]] = []
        self.first = threading.Event()
        self.stopped_serving = threading.Event()
        self._stream = health_pb2_grpc.HealthStub(self.channel).Watch(
            health_pb2.HealthCheckRequest(service=probe.get("service", "")), timeout=STARTUP_LIMIT_S
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for response in self._stream:
                self.statuses.append((time.monotonic(), response.status))
                self.first.set()
                if response.status != SERVING:
                    self.stopped_serving.set()
        except grpc.RpcError:
            pass
        finally:
            self.first.set()

    def close(self) -> None:
        self._stream.cancel()
        self.channel.close()


@dataclass
class Termination:
    exit_code: int | None
    seconds: float
    not_serving_after_s: float | None
    liveness_while_draining: str


def terminate(pod: Pod, grace_s: int) -> Termination:
    """SIGTERM, as the kubelet sends it; then waits at most the grace period."""
    watch = ReadinessWatch(pod)
    if not watch.first.wait(5) or not watch.statuses or watch.statuses[0][1] != SERVING:
        raise AssertionError(f"{pod.name}: readiness Watch did not start with SERVING: {watch.statuses}")
    sent = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)
    stopped = watch.stopped_serving.wait(grace_s)
    not_serving_after = watch.statuses[-1][0] - sent if stopped else None
    # The kubelet keeps running the liveness probe while a pod terminates: a draining pod
    # must stay live, or it is killed before its calls finish.
    liveness = "not checked"
    if stopped and pod.process.poll() is None:
        _, liveness = grpc_probe(pod, pod.container["livenessProbe"])
    try:
        exit_code = pod.process.wait(timeout=max(0.0, grace_s - (time.monotonic() - sent)))
    except subprocess.TimeoutExpired:
        exit_code = None
        pod.process.kill()
        pod.process.wait()
    watch.close()
    return Termination(exit_code, time.monotonic() - sent, not_serving_after, liveness)


def scrape(pod: Pod, port: int | str, path: str = "/metrics") -> str:
    url = f"http://{pod.ip}:{pod.container_port(port)}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


class OtlpSink:
    """A stand-in OpenTelemetry Collector: accepts every OTLP/gRPC export (an empty
    Export*ServiceResponse is zero bytes) and counts them by method."""

    def __init__(self, address: str):
        from concurrent import futures

        self.exports: dict[str, int] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                method = details.method

                def export(request: bytes, context) -> bytes:
                    with sink._lock:
                        sink.exports[method] = sink.exports.get(method, 0) + 1
                    return b""

                return grpc.unary_unary_rpc_method_handler(export)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port(address)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
