"""`make bench-bundle` keeps working: a small run ends with one JSON line whose figures add up."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_bundle_ends_with_one_json_line():
    proc = subprocess.run(
        [sys.executable, "bench/bundle.py", "--revoked", "300", "--added", "7", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "bundle" and figures["revoked"] == 300
    # 300 hashes of 16 bytes (17 with their CBOR heads) are in the full bundle; 7 more make the delta.
    assert figures["full_v2_bytes"] - figures["full_bytes"] == 7 * 17
    assert 7 * 17 < figures["delta_bytes"] < figures["full_bytes"]
