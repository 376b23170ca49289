"""A notesuite process's per-call counts from /metrics, and what they say about a run.

h2load counts HTTP 200s, and every gRPC error is an HTTP 200 too: only the server's own count by
gRPC status code tells whether the calls of a run really succeeded.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

CALL_COUNT = "rpc_server_call_duration_seconds_count"
ACTIVE_CALLS = "rpc_server_active_calls"
SAMPLE = re.compile(rf"^(?P<name>{CALL_COUNT}|{ACTIVE_CALLS})\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SCRAPE_TIMEOUT_S = 5
QUIET_POLL_S = 0.05
QUIET_POLLS = 3


@dataclass(frozen=True)
class Method:
    service: str
    name: str

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


@dataclass
class Scrape:
    # (rpc_service, rpc_method, rpc_grpc_status_code) -> calls ended so far
    calls: Counter = field(default_factory=Counter)
    # (rpc_service, rpc_method) -> calls in flight now
    active: Counter = field(default_factory=Counter)

    def active_calls(self, method: Method) -> int:
        return self.active[(method.service, method.name)]


def scrape(metrics_address: str) -> Scrape:
    url = f"http://{metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        text = response.read().decode()
    result = Scrape()
    for sample in SAMPLE.finditer(text):
        labels = dict(LABEL.findall(sample["labels"]))
        value = int(float(sample["value"]))
        if sample["name"] == CALL_COUNT:
            result.calls[(labels["rpc_service"], labels["rpc_method"], int(labels["rpc_grpc_status_code"]))] += value
        else:
            result.active[(labels["rpc_service"], labels["rpc_method"])] += value
    return result


def wait_until_quiet(metrics_address: str, method: Method, timeout_s: float) -> Scrape:
    """Scrapes until the calls of `method` in flight stop changing (calls a client abandoned may
    still be running), then returns the last scrape. A server still too busy with them to
    answer a scrape in time is not quiet yet: only one that answers none before `timeout_s`
    fails."""
    deadline = time.monotonic() + timeout_s
    last = _scrape_by(metrics_address, deadline)
    unchanged = 0
    while unchanged < QUIET_POLLS and time.monotonic() < deadline:
        time.sleep(QUIET_POLL_S)
        current = _scrape_by(metrics_address, deadline)
        same = current.active_calls(method) == last.active_calls(method) and current.calls == last.calls
        unchanged = unchanged + 1 if same else 0
        last = current
    return last


def _scrape_by(metrics_address: str, deadline: float) -> Scrape:
    """A scrape, tried again after each timeout until `deadline` (then the timeout is raised)."""
    while True:
        try:
            return scrape(metrics_address)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def calls_by_status(before: Scrape, after: Scrape, method: Method) -> dict[int, int]:
    """Calls of `method` that ended between the two scrapes, by gRPC status code."""
    by_status: dict[int, int] = {}
    for (service, name, code), count in after.calls.items():
        if (service, name) == (method.service, method.name):
            delta = count - before.calls.get((service, name, code), 0)
            if delta:
                by_status[code] = delta
    return by_status


def status_problems(by_status: dict[int, int], succeeded: int) -> list[str]:
    """What makes a run invalid, judged from the server's count of its calls: every call must
    have ended OK, and there must be as many OKs as h2load saw succeed."""
    problems = []
    ok = by_status.get(0, 0)
    if ok < succeeded:
        problems.append(f"server counted {ok} OK calls, h2load {succeeded} successes")
    others = {code: count for code, count in by_status.items() if code != 0}
    if others:
        described = ", ".join(f"{count} with status {code}" for code, count in sorted(others.items()))
        problems.append(f"non-OK calls: {described}")
    return problems
