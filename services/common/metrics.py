"""Prometheus metrics shared by the services, served on each service's own HTTP port.

Labels are bounded sets (service, method, gRPC code, verdict, checkpoint id): never a person, a
barcode, a token or any other unbounded or personal value.

Metrics counted on every call (`LoopCounter`, `LoopHistogram`) are plain numbers that only the event
loop's thread changes, with no lock, and are read by the /metrics thread at scrape time: on the
verify hot path a prometheus_client Histogram and Counter (a lock and several method calls each)
cost about 7 µs of CPU per call, measured.
"""

from __future__ import annotations

import bisect
import urllib.request
from collections import Counter as Tally

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString


class LoopCounter:
    """A counter family whose `values` (label values tuple → count) the event loop bumps directly."""

    def __init__(self, name: str, documentation: str, labels: list[str], registry=REGISTRY):
        self._name, self._documentation, self._labels = name, documentation, labels
        self.values: Tally = Tally()
        registry.register(self)

    def collect(self):
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, count in self.values.copy().items():  # copy: atomic under the GIL
            family.add_metric(list(labels), count)
        yield family


class HistogramChild:
    """The observations of one label set: counts per bucket (not cumulative) and their sum."""

    def __init__(self, bounds: tuple[float, ...]):
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1  # le: value <= bound
        self.sum += value


class LoopHistogram:
    def __init__(self, name: str, documentation: str, labels: list[str], buckets: tuple[float, ...], registry=REGISTRY):
        self._name, self._documentation, self._labels = name, documentation, labels
        self._bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        """The child of these label values; keep it, as the guard does, rather than look it up per call."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HistogramChild(self._bounds)
        return child

    def collect(self):
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum  # a scrape may miss a call in flight, never err
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), counts):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(labels), buckets, total)
        yield family


RPC_HANDLED = LoopCounter(
    "covidtest_rpc_handled", "RPCs completed, by method and gRPC status code", ["service", "method", "code"]
)
RPC_LATENCY = LoopHistogram(
    "covidtest_rpc_duration_seconds",
    "Server-side RPC latency",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_DENIED = Counter("covidtest_auth_denied_total", "Calls refused by caller identity checks", ["service", "code"])
# Per process (the scrape target names the service): found, refused (unknown, revoked or disabled),
# unreachable (Postgres slow or down), throttled (not looked up: the address's unknown-credential budget
# was spent). Cache hits are not counted.
CREDENTIAL_LOOKUPS = Counter(
    "covidtest_credential_lookups_total",
    "Credential lookups in Postgres by outcome, and lookups refused by the per-address limit (throttled)",
    ["outcome"],
)
DEPENDENCY_UP = Gauge(
    "covidtest_dependency_up", "1 when a dependency answers, 0 when degraded", ["service", "dependency"]
)


class ProcessesCollector:
    """One scrape target for all the processes of a pod (SERVER_PROCESSES): this process's metrics and each
    worker's, read from the worker's own /metrics on 127.0.0.1 at scrape time, every sample labelled
    `process` ("0" for this one), one family per name. A worker that does not answer within the timeout
    is left out of that scrape and `covidtest_metrics_process_up{process}` says 0."""

    def __init__(self, worker_ports: list[int], registry=REGISTRY, timeout_s: float = 2.0):
        self._workers = list(enumerate(worker_ports, start=1))
        self._registry = registry
        self._timeout_s = timeout_s

    def collect(self):
        families: dict[str, Metric] = {}

        def add(metric: Metric, process: str) -> None:
            merged = families.get(metric.name)
            if merged is None:
                merged = families[metric.name] = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            merged.samples += [
                sample._replace(labels={**sample.labels, "process": process}) for sample in metric.samples
            ]

        for metric in self._registry.collect():
            add(metric, "0")
        up = GaugeMetricFamily(
            "covidtest_metrics_process_up", "1 when a process of this pod answered this scrape", labels=["process"]
        )
        up.add_metric(["0"], 1)
        for number, port in self._workers:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=self._timeout_s) as answer:
                    text = answer.read().decode("utf-8")
            except OSError:
                up.add_metric([str(number)], 0)
                continue
            for metric in text_string_to_metric_families(text):
                add(metric, str(number))
            up.add_metric([str(number)], 1)
        yield from families.values()
        yield up


def serve_metrics(port: int, host: str = "0.0.0.0", worker_ports: list[int] | None = None):
    """Start the /metrics HTTP server in a background thread; returns (server, thread). With `worker_ports`
    it serves the whole pod: its own metrics and those its workers serve on those ports (ProcessesCollector)."""
    if not worker_ports:
        return start_http_server(port, addr=host)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessesCollector(worker_ports))
    return start_http_server(port, addr=host, registry=registry)
