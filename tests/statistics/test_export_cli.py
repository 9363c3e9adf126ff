"""`python -m services.admin statistics export`: CSV with the service's figures and suppression."""

from __future__ import annotations

import csv
import io
import json

from tests.admin.cli_runner import run_admin


def export(database_url: str, *args: str):
    return run_admin(database_url, {}, "statistics", "export", *args)


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_tests_export_to_a_file(world, database_url, tmp_path):
    out = tmp_path / "tests.csv"
    proc = export(database_url, "--province", "24", "--kind", "tests", "--from", "2021-10-01", "--to", "2021-10-31",
                  "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"kind": "tests", "province": "24", "rows": 5, "out": str(out)}
    rows = {(r["date"], r["district_code"], r["lab_organisation_id"]): r for r in table(out.read_text())}
    a, b, c = (str(x) for x in (world["orgs"].lab_a, world["orgs"].lab_b, world["orgs"].lab_c))
    assert all(k[2] != c for k in rows)  # province 26's lab never appears
    few_positives = rows[("2021-10-05", "213", a)]
    assert (few_positives["tests"], few_positives["positives"], few_positives["positivity"]) == ("12", "<5", "<5")
    few_tests = rows[("2021-10-05", "213", b)]
    assert (few_tests["tests"], few_tests["positives"], few_tests["positivity"]) == ("<5", "0", "<5")
    plain = rows[("2021-10-05", "214", a)]
    assert (plain["tests"], plain["positives"], plain["positivity"], plain["pools_tested"]) == (
        "21",
        "7",
        "0.3333",
        "0",
    )
    assert plain["pool_positivity"] == ""  # no pools: no rate
    pooled = rows[("2021-10-06", "216", a)]
    assert (pooled["pools_tested"], pooled["pools_positive"], pooled["pool_positivity"]) == ("8", "<5", "<5")


async def test_turnaround_backlog_and_verdicts_to_stdout(world, database_url):
    a, b = str(world["orgs"].lab_a), str(world["orgs"].lab_b)
    proc = export(
        database_url, "--province", "24", "--kind", "turnaround", "--from", "2021-10-05", "--to", "2021-10-05"
    )
    assert proc.returncode == 0, proc.stderr
    rows = {(r["district_code"], r["lab_organisation_id"]): r for r in table(proc.stdout)}
    assert (rows[("214", a)]["count"], rows[("214", a)]["p50_seconds"], rows[("214", a)]["p90_seconds"]) == (
        "21",
        str(10 * 3600),
        str(18 * 3600),
    )
    assert [rows[("213", b)][k] for k in ("count", "p50_seconds", "p90_seconds")] == ["<5", "<5", "<5"]

    proc = export(database_url, "--province", "24", "--kind", "backlog")
    assert proc.returncode == 0, proc.stderr
    assert table(proc.stdout) == [
        {"lab_organisation_id": a, "under_24_hours": "7", "from_24_to_48_hours": "<5", "over_48_hours": "6"}
    ]

    proc = export(database_url, "--province", "24", "--kind", "verdicts", "--from", "2021-10-05", "--to", "2021-10-05")
    assert proc.returncode == 0, proc.stderr
    assert [(r["verdict"], r["count"]) for r in table(proc.stdout)] == [
        ("REVOKED", "<5"),
        ("VALID", "50"),
        ("VALID", "7"),
    ]
    assert proc.stdout.splitlines()[0] == "hour,checkpoint_device_id,verdict,count"


async def test_bad_usage_is_refused(world, database_url):
    proc = export(database_url, "--province", "24", "--kind", "people", "--from", "2021-10-01", "--to", "2021-10-31")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = export(database_url, "--province", "24", "--kind", "tests", "--from", "2021-01-01", "--to", "2022-06-01")
    assert proc.returncode == 1 and "--to: at most 366 days" in proc.stderr
    proc = export(database_url, "--province", "24", "--kind", "tests")
    assert proc.returncode == 1 and "--from: YYYY-MM-DD" in proc.stderr
    proc = export(database_url, "--province", "Bac Giang", "--kind", "backlog")
    assert proc.returncode == 1 and "province_code" in proc.stderr
