"""proxies.py: the config each proxy gets, checked for what makes CPU per call comparable (one
worker, HTTP/2 on both sides, connections reused), and by the proxy itself where installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from notesuite_bench import proxies
from notesuite_bench.scenarios import hop

LISTEN = "127.0.0.1:18080"
BACKEND = "127.0.0.1:18081"


def kind(name: str) -> proxies.ProxyKind:
    return next(k for k in proxies.KINDS if k.name == name)


def test_haproxy_speaks_h2_on_both_sides_with_one_thread_and_shared_connections():
    config = proxies.haproxy_config(LISTEN, BACKEND)
    lines = [line.strip() for line in config.splitlines()]
    assert "nbthread 1" in lines
    assert "mode http" in lines
    assert f"bind {LISTEN} proto h2" in lines
    assert f"server notes {BACKEND} proto h2" in lines
    assert "http-reuse always" in lines


def test_nginx_is_one_process_and_keeps_its_connections_past_1000_calls(tmp_path):
    config = proxies.nginx_config(LISTEN, BACKEND, tmp_path)
    lines = [line.strip() for line in config.splitlines()]
    assert {"master_process off;", "worker_processes 1;", "daemon off;"} <= set(lines)
    assert f"listen {LISTEN} http2;" in lines
    assert "grpc_pass grpc://notes;" in lines
    assert f"server {BACKEND};" in lines
    # Client side (http) and upstream side: both default to 1,000 calls per connection.
    assert lines.count(f"keepalive_requests {proxies.KEEPALIVE_REQUESTS};") == 2
    assert proxies.KEEPALIVE_REQUESTS > 1000
    assert f"keepalive {proxies.NGINX_UPSTREAM_KEEPALIVE};" in lines
    assert f"pid {tmp_path / 'nginx.pid'};" in lines


def test_envoy_forwards_every_path_over_h2_with_limits_above_1000_in_flight():
    config = json.loads(proxies.envoy_config(LISTEN, BACKEND))
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18080}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["codec_type"] == "HTTP2"
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route == {"match": {"prefix": "/"}, "route": {"cluster": "notes", "timeout": "0s"}}
    cluster = config["static_resources"]["clusters"][0]
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18081}
    assert min(cluster["circuit_breakers"]["thresholds"][0].values()) > 1000


def test_envoy_runs_one_worker():
    argv = kind("Envoy").argv(Path("/bin/envoy"), Path("/tmp/envoy.json"))
    assert argv[argv.index("--concurrency") + 1] == "1"


# How each proxy checks a config without serving it.
CHECKS = {
    "HAProxy": lambda binary, config: [str(binary), "-c", "-f", str(config)],
    "nginx": lambda binary, config: [str(binary), "-t", "-e", "stderr", "-p", str(config.parent), "-c", str(config)],
    "Envoy": lambda binary, config: [str(binary), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_proxy_accepts_its_config(name, tmp_path):
    proxy = kind(name)
    binary = proxy.find()
    if binary is None:
        pytest.skip(f"{name} is not installed ({proxy.installed_by})")
    config = tmp_path / proxy.config_name
    config.write_text(proxy.render(LISTEN, BACKEND, tmp_path))
    checked = subprocess.run(CHECKS[name](binary, config), check=False, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_hop_plans_no_run_for_a_proxy_that_is_not_installed(monkeypatch):
    monkeypatch.setattr(proxies, "available", lambda: list(proxies.KINDS))
    everything = hop.planned_runs(rounds=2)
    monkeypatch.setattr(proxies, "available", lambda: list(proxies.KINDS[:1]))
    # Two loads, two rounds, two proxies fewer.
    assert hop.planned_runs(rounds=2) == everything - 2 * 2 * 2
