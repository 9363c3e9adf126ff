"""Prometheus metrics shared by the services, served on each service's own HTTP port.

Labels are bounded sets (service, method, gRPC code, verdict, checkpoint id): never a person, a
barcode, a token or any other unbounded or personal value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_HANDLED = Counter(
    "covidtest_rpc_handled_total", "RPCs completed, by method and gRPC status code", ["service", "method", "code"]
)
RPC_LATENCY = Histogram(
    "covidtest_rpc_duration_seconds", "Server-side RPC latency", ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_DENIED = Counter("covidtest_auth_denied_total", "Calls refused by caller identity checks", ["service", "code"])
DEPENDENCY_UP = Gauge("covidtest_dependency_up", "1 when a dependency answers, 0 when degraded", ["service", "dependency"])


def serve_metrics(port: int, host: str = "0.0.0.0"):
    """Start the /metrics HTTP server in a background thread; returns (server, thread)."""
    return start_http_server(port, addr=host)
