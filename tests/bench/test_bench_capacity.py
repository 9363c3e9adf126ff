"""`make bench-capacity` run small on its own HA topology, and the CPU meter it rests on."""

import subprocess
import sys
import time

from bench.topology_cpu import cpu_seconds
from tests.bench.last_line import bench_figures

# A parent that starts a child burning about 0.3 s of CPU, reaps it, then waits to be killed.
BURN = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
PARENT = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", "{BURN}"])
print("reaped", flush=True)
time.sleep(60)
"""


def test_a_reaped_childs_cpu_counts_in_its_parent():
    """A Postgres backend that exits during a phase must still count: in its postmaster's seconds."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "reaped"
        seconds = cpu_seconds(parent.pid)
        assert seconds is not None and seconds >= 0.25, seconds
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while cpu_seconds(parent.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cpu_seconds(parent.pid) is None  # gone: not counted


def test_bench_capacity_ends_with_one_json_line_naming_each_components_cost():
    figures = bench_figures(
        "bench/capacity.py",
        "--certificates", "6000", "--pipeline-rate", "100", "--pipeline-seconds", "2",
        "--lab-clients", "4", "--intake-seconds", "2", "--verify-seconds", "0.3", "--verify-warmup", "0",
    )  # fmt: skip
    assert figures["bench"] == "capacity"
    pipeline = figures["pipeline"]
    assert pipeline["operations"] == 200 and pipeline["lag_p99_ms"] > 0
    # The whole path of a sample: intake on result_svc-0, the three Postgres servers, a relay leader.
    costs = pipeline["cpu_ms_per_operation"]
    for component in ("result_svc-0", "pg:primary", "pg:standby", "pg:replica"):
        assert costs.get(component, 0) > 0, (component, costs)
    assert any(costs.get(f"publish_svc-{i}", 0) > 0 for i in (0, 1)), costs
    assert figures["intake_two_replicas"]["cores"].get("result_svc-1", 0) > 0
    assert figures["relay_drain"]["certificates_per_s"] > 0
    assert figures["feed_read"]["operations"] >= 6000
    # First scans: one replica alone spends nothing on the other; both runs spend on both.
    assert "verify_svc-1" not in figures["verify_one_replica"]["cores"] or (
        figures["verify_one_replica"]["cores"]["verify_svc-1"] < 0.05
    )
    assert all(figures["verify_two_replicas"]["cores"].get(f"verify_svc-{i}", 0) > 0.05 for i in (0, 1))
    assert figures["verify_paced"]["rps"] > 0
    # After Redis is emptied, the misses read statuses from Postgres's read replica, and still answer VALID.
    storm = figures["verify_after_redis_flush"]
    replica_cost = storm["cpu_ms_per_operation"].get("pg:replica", 0)
    assert replica_cost > 3 * figures["verify_paced"]["cpu_ms_per_operation"].get("pg:replica", 0), storm
    assert storm["operations"] > 0 and storm["valid"] >= storm["operations"], storm
