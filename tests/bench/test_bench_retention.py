"""`make bench-retention` keeps working: a small run ends with one JSON line whose figures add up."""

from tests.bench.last_line import bench_figures


def test_bench_retention_ends_with_one_json_line():
    figures = bench_figures("bench/retention_job.py", "--persons", "300", "--chunk", "100")
    assert figures["bench"] == "retention" and figures["persons"] == 300
    # Half the persons are due; each has two samples, so two certificates and two feed events.
    assert figures["persons_erased"] == figures["persons_kept"] == 150
    assert figures["certificate_qr_erased"] == figures["feed_payloads_redacted"] == 300
