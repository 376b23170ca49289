"""A do-nothing OpenTelemetry collector: accepts OTLP/gRPC trace and metric exports and drops
them, counting requests and bytes. It runs inside the harness, so on the load core."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures

import grpc

# An empty Export*ServiceResponse (no partial_success) is zero bytes on the wire.
EMPTY_RESPONSE = b""
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class OtlpSink:
    def __init__(self):
        self.requests: Counter = Counter()
        self.bytes: Counter = Counter()
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(service, {"Export": self._export_handler(signal)})
                for signal, service in SERVICES.items()
            ]
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"
        self.server.start()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {f"{signal}_exports": self.requests[signal] for signal in SERVICES} | {
                f"{signal}_bytes": self.bytes[signal] for signal in SERVICES
            }

    def stop(self) -> None:
        self.server.stop(grace=None)

    def _export_handler(self, signal: str) -> grpc.RpcMethodHandler:
        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.requests[signal] += 1
                self.bytes[signal] += len(request)
            return EMPTY_RESPONSE

        # No (de)serializers: requests and responses stay raw bytes.
        return grpc.unary_unary_rpc_method_handler(export)
