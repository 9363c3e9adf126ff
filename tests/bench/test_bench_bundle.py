"""`make bench-bundle` keeps working: a small run ends with one JSON line whose figures add up."""

from tests.bench.last_line import bench_figures


def test_bench_bundle_ends_with_one_json_line():
    figures = bench_figures("bench/bundle.py", "--revoked", "300", "--added", "7", "--rounds", "1")
    assert figures["bench"] == "bundle" and figures["revoked"] == 300
    # 300 hashes of 16 bytes (17 with their CBOR heads) are in the full bundle; 7 more make the delta.
    assert figures["full_v2_bytes"] - figures["full_bytes"] == 7 * 17
    assert 7 * 17 < figures["delta_bytes"] < figures["full_bytes"]
