"""The lock-free per-call metrics read as ordinary Prometheus counters and histograms."""

from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import LoopCounter, LoopHistogram


def _samples(registry) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_histogram_buckets_are_cumulative_and_inclusive():
    registry = CollectorRegistry()
    histogram = LoopHistogram("t_seconds", "test", ["method"], buckets=(0.001, 0.01, 1), registry=registry)
    child = histogram.labels("Verify")
    for value in (0.0002, 0.001, 0.005, 0.5, 3):  # 0.001 is in the le="0.001" bucket: le means <=
        child.observe(value)
    samples = _samples(registry)
    assert samples['t_seconds_bucket{le="0.001",method="Verify"}'] == 2
    assert samples['t_seconds_bucket{le="0.01",method="Verify"}'] == 3
    assert samples['t_seconds_bucket{le="1.0",method="Verify"}'] == 4
    assert samples['t_seconds_bucket{le="+Inf",method="Verify"}'] == 5
    assert samples['t_seconds_count{method="Verify"}'] == 5
    assert abs(samples['t_seconds_sum{method="Verify"}'] - 3.5062) < 1e-9
    assert histogram.labels("Verify") is child  # one child per label set


def test_counter_values_are_exported_per_label_set():
    registry = CollectorRegistry()
    counter = LoopCounter("t_calls", "test", ["method", "code"], registry=registry)
    counter.values[("Verify", "OK")] += 2
    counter.values[("Verify", "INVALID_ARGUMENT")] += 1
    samples = _samples(registry)
    assert samples['t_calls_total{code="OK",method="Verify"}'] == 2
    assert samples['t_calls_total{code="INVALID_ARGUMENT",method="Verify"}'] == 1
