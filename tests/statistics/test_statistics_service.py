"""StatisticsService over real gRPC through the running result_svc, on a generated record: the numbers
against direct SQL, suppression of 1-4 (and of rates and percentiles built on them), province scoping,
roles, bad input, paging and the incremental refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest

from services.common.db import connect
from services.gen.covidtest.statistics.v1 import statistics_service_pb2 as pb
from services.gen.covidtest.type.v1 import verdict_pb2
from tests.grpc_errors import error_reason, violations
from tests.statistics import dataset
from tests.statistics.conftest import refresh
from tests.statistics.dataset import D1

OCTOBER = pb.DayRange(from_date="2021-10-01", to_date="2021-10-31")


async def all_rows(call, request, metadata):
    rows, token = [], ""
    while True:
        request.page_token = token
        page = await call(request, metadata=metadata)
        rows += list(page.rows)
        token = page.next_page_token
        if not token:
            return rows


def shown(count: pb.SuppressibleCount) -> int | str:
    return "<5" if count.suppressed else count.value


def expected(n: int) -> int | str:
    return "<5" if 0 < n < 5 else n


async def test_test_counts_match_the_record(world, database_url):
    stub = world["stub"]
    rows = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha24"])
    got = {
        (r.date, r.district_code, r.lab_organisation_id): (
            shown(r.tests),
            shown(r.positives),
            shown(r.pools_tested),
            shown(r.pools_positive),
        )
        for r in rows
    }
    # The same figures counted straight from the record.
    conn = await asyncpg.connect(database_url)
    try:
        truth = await conn.fetch(
            """SELECT (s.collected_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS day, p.district_code, r.lab_org_id,
                      count(*) FILTER (WHERE r.state = 'RELEASED') AS tests,
                      count(*) FILTER (WHERE r.state = 'RELEASED' AND r.outcome = 'POSITIVE') AS positives,
                      count(DISTINCT r.pool_id) AS pools,
                      count(DISTINCT r.pool_id) FILTER (WHERE r.state = 'RETEST_REQUIRED') AS pools_positive
               FROM results r JOIN samples s ON s.id = r.sample_id JOIN persons p ON p.id = s.person_id
               WHERE p.province_code = '24' AND r.state IN ('RELEASED', 'RETEST_REQUIRED')
               GROUP BY 1, 2, 3"""
        )
    finally:
        await conn.close()
    assert got == {
        (t["day"].isoformat(), t["district_code"], str(t["lab_org_id"])): (
            expected(t["tests"]),
            expected(t["positives"]),
            expected(t["pools"]),
            expected(t["pools_positive"]),
        )
        for t in truth
    }
    a, b = str(world["orgs"].lab_a), str(world["orgs"].lab_b)
    assert got[("2021-10-05", "213", a)] == (12, "<5", 0, 0)
    assert got[("2021-10-05", "213", b)] == ("<5", 0, 0, 0)
    assert got[("2021-10-05", "214", a)] == (21, 7, 0, 0)  # the amended result counts as POSITIVE, once
    assert got[("2021-10-06", "215", a)] == (12, 0, 11, 5)
    assert got[("2021-10-06", "216", a)] == (12, 0, 8, "<5")


async def test_rates_built_on_suppressed_counts_are_suppressed(world):
    rows = await all_rows(world["stub"].ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha24"])
    by_key = {(r.date, r.district_code, r.lab_organisation_id): r for r in rows}
    a, b = str(world["orgs"].lab_a), str(world["orgs"].lab_b)
    few_positives = by_key[("2021-10-05", "213", a)]
    assert few_positives.positivity.suppressed and few_positives.positivity.value == 0
    assert few_positives.positives.value == 0  # the hidden count is never sent
    few_tests = by_key[("2021-10-05", "213", b)]
    assert few_tests.tests.suppressed and few_tests.tests.value == 0
    assert not few_tests.positives.suppressed and few_tests.positives.value == 0  # 0 is shown
    assert few_tests.positivity.suppressed
    plain = by_key[("2021-10-05", "214", a)]
    assert not plain.positivity.suppressed and plain.positivity.value == pytest.approx(7 / 21)
    pooled = by_key[("2021-10-06", "215", a)]
    assert pooled.pool_positivity.value == pytest.approx(5 / 11) and not pooled.pool_positivity.suppressed
    assert not pooled.positivity.suppressed and pooled.positivity.value == 0
    assert by_key[("2021-10-06", "216", a)].pool_positivity.suppressed


async def test_turnaround_percentiles(world, database_url):
    rows = await all_rows(world["stub"].ListTurnaround, pb.ListTurnaroundRequest(range=OCTOBER), world["ha24"])
    by_key = {(r.date, r.district_code, r.lab_organisation_id): r for r in rows}
    a, b = str(world["orgs"].lab_a), str(world["orgs"].lab_b)
    row = by_key[("2021-10-05", "214", a)]
    # 1..20 h and the amended sample's first version after 2 h: 21 values; observed median and p90.
    assert (row.count.value, row.p50.value.seconds, row.p90.value.seconds) == (21, 10 * 3600, 18 * 3600)
    conn = await asyncpg.connect(database_url)
    try:
        p50, p90 = await conn.fetchrow(
            """SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY f.recorded_at - s.collected_at),
                      percentile_disc(0.9) WITHIN GROUP (ORDER BY f.recorded_at - s.collected_at)
               FROM results r JOIN samples s ON s.id = r.sample_id JOIN persons p ON p.id = s.person_id
               JOIN results f ON f.sample_id = s.id AND f.version = 1
               WHERE r.state = 'RELEASED' AND p.district_code = '214' AND r.lab_org_id = $1""",
            world["orgs"].lab_a,
        )
    finally:
        await conn.close()
    assert (row.p50.value.seconds, row.p90.value.seconds) == (p50.total_seconds(), p90.total_seconds())
    few = by_key[("2021-10-05", "213", b)]
    assert few.count.suppressed and few.p50.suppressed and few.p90.suppressed
    assert not few.p50.HasField("value") and not few.p90.HasField("value")


async def test_lab_backlog_by_age(world):
    answer = await world["stub"].GetLabBacklog(pb.GetLabBacklogRequest(), metadata=world["ha24"])
    labs = {r.lab_organisation_id: r for r in answer.labs}
    assert set(labs) == {str(world["orgs"].lab_a)}  # lab C is in province 26; lab B has nothing waiting
    row = labs[str(world["orgs"].lab_a)]
    assert (shown(row.under_24_hours), shown(row.from_24_to_48_hours), shown(row.over_48_hours)) == (7, "<5", 6)
    assert answer.as_of.seconds > 0


async def test_verdict_counts_of_the_provinces_devices(world):
    request = pb.ListVerdictCountsRequest(range=pb.DayRange(from_date="2021-10-05", to_date="2021-10-05"))
    rows = await all_rows(world["stub"].ListVerdictCounts, request, world["ha24"])
    got = [(r.hour.ToDatetime(UTC).hour, r.checkpoint_device_id, r.verdict, shown(r.count)) for r in rows]
    dev = str(world["dev24"])
    assert got == [
        (2, dev, verdict_pb2.VERDICT_REVOKED, "<5"),
        (2, dev, verdict_pb2.VERDICT_VALID, 50),
        (3, dev, verdict_pb2.VERDICT_VALID, 7),
    ]
    # A day before (Vietnam time) holds none of them.
    request.range.CopyFrom(pb.DayRange(from_date="2021-10-04", to_date="2021-10-04"))
    assert not (await world["stub"].ListVerdictCounts(request, metadata=world["ha24"])).rows


async def test_another_provinces_data_never_appears(world):
    stub, c = world["stub"], str(world["orgs"].lab_c)
    rows24 = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha24"])
    assert rows24 and all(r.lab_organisation_id != c and r.district_code != "001" for r in rows24)
    rows26 = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha26"])
    assert [(r.lab_organisation_id, r.tests.value, r.positives.value) for r in rows26] == [(c, 30, 5)]
    # Naming its own province is the same as naming none; naming another is refused.
    own_request = pb.ListTestCountsRequest(province_code="24", range=OCTOBER)
    own = await all_rows(stub.ListTestCounts, own_request, world["ha24"])
    assert own == rows24
    for call, request in (
        (stub.ListTestCounts, pb.ListTestCountsRequest(province_code="26", range=OCTOBER)),
        (stub.ListTurnaround, pb.ListTurnaroundRequest(province_code="26", range=OCTOBER)),
        (stub.GetLabBacklog, pb.GetLabBacklogRequest(province_code="26")),
        (stub.ListVerdictCounts, pb.ListVerdictCountsRequest(province_code="26", range=OCTOBER)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=world["ha24"])
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "SCOPE_NOT_ALLOWED"
    backlog26 = await stub.GetLabBacklog(pb.GetLabBacklogRequest(), metadata=world["ha26"])
    assert [(r.lab_organisation_id, r.under_24_hours.value) for r in backlog26.labs] == [(c, 8)]
    verdicts26 = await stub.ListVerdictCounts(pb.ListVerdictCountsRequest(range=OCTOBER), metadata=world["ha26"])
    assert [(r.checkpoint_device_id, r.count.value) for r in verdicts26.rows] == [(str(world["dev26"]), 40)]


async def test_an_operator_names_the_province(world):
    stub = world["stub"]
    rows = await all_rows(
        stub.ListTestCounts, pb.ListTestCountsRequest(province_code="26", range=OCTOBER), world["operator"]
    )
    assert [r.lab_organisation_id for r in rows] == [str(world["orgs"].lab_c)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListTestCounts(pb.ListTestCountsRequest(range=OCTOBER), metadata=world["operator"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == [("province_code", "FIELD_REQUIRED")]


@pytest.mark.parametrize("who", ["lab", "partner"])
async def test_other_roles_are_refused(world, who):
    stub = world["stub"]
    for call, request in (
        (stub.ListTestCounts, pb.ListTestCountsRequest(province_code="24", range=OCTOBER)),
        (stub.ListTurnaround, pb.ListTurnaroundRequest(province_code="24", range=OCTOBER)),
        (stub.GetLabBacklog, pb.GetLabBacklogRequest(province_code="24")),
        (stub.ListVerdictCounts, pb.ListVerdictCountsRequest(province_code="24", range=OCTOBER)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=world[who])
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "ROLE_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("day_range", "expected_violations"),
    [
        (pb.DayRange(from_date="2021-01-01", to_date="2022-01-02"), [("range.to_date", "FIELD_OUT_OF_RANGE")]),
        (pb.DayRange(from_date="2021-10-31", to_date="2021-10-01"), [("range.to_date", "FIELD_OUT_OF_RANGE")]),
        (pb.DayRange(), [("range.from_date", "FIELD_REQUIRED"), ("range.to_date", "FIELD_REQUIRED")]),
        (
            pb.DayRange(from_date="2021-02-30", to_date="21-10-01"),
            [
                ("range.from_date", "FIELD_FORMAT_INVALID"),
                ("range.to_date", "FIELD_FORMAT_INVALID"),
            ],
        ),
        (
            pb.DayRange(from_date="0001-01-01", to_date="0001-01-02"),
            [
                ("range.from_date", "FIELD_OUT_OF_RANGE"),
                ("range.to_date", "FIELD_OUT_OF_RANGE"),
            ],
        ),
    ],
)
async def test_bad_periods_are_invalid_argument(world, day_range, expected_violations):
    stub = world["stub"]
    for call, request in (
        (stub.ListTestCounts, pb.ListTestCountsRequest(range=day_range)),
        (stub.ListTurnaround, pb.ListTurnaroundRequest(range=day_range)),
        (stub.ListVerdictCounts, pb.ListVerdictCountsRequest(range=day_range)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=world["ha24"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(err.value) == expected_violations


async def test_a_full_year_is_allowed_and_other_bad_fields_are_refused(world):
    stub = world["stub"]
    leap = pb.DayRange(from_date="2020-01-01", to_date="2020-12-31")  # 366 days
    await stub.ListTestCounts(pb.ListTestCountsRequest(range=leap), metadata=world["ha24"])
    for request, field in (
        (pb.ListTestCountsRequest(range=OCTOBER, page_size=-1), "page_size"),
        (pb.ListTestCountsRequest(range=OCTOBER, page_token="nonsense"), "page_token"),
        (pb.ListTestCountsRequest(range=OCTOBER, province_code="2x"), "province_code"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListTestCounts(request, metadata=world["ha24"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in violations(err.value)] == [field]


async def test_pages_walk_every_row_once(world):
    stub = world["stub"]
    whole = (await stub.ListTestCounts(pb.ListTestCountsRequest(range=OCTOBER), metadata=world["ha24"])).rows
    paged = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER, page_size=2), world["ha24"])
    assert len(whole) == 5 and list(whole) == paged
    first = await stub.ListTestCounts(pb.ListTestCountsRequest(range=OCTOBER, page_size=2), metadata=world["ha24"])
    other = pb.DayRange(from_date="2021-10-01", to_date="2021-10-30")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListTestCounts(
            pb.ListTestCountsRequest(range=other, page_token=first.next_page_token), metadata=world["ha24"]
        )
    assert error_reason(err.value) == "PAGE_TOKEN_INVALID"


async def test_the_refresh_picks_up_new_and_withdrawn_results(world, database_url):
    stub, orgs = world["stub"], world["orgs"]
    conn = await connect(database_url)
    try:
        # Two more tests for (D1, 213, lab B), recorded now (lab B's results are all of that cell): the
        # refresh finds them by their recording time and recomputes their day.
        await dataset.tested(conn, orgs, orgs.lab_b, "24", "213", D1, ["POSITIVE", "NEGATIVE"])
        await conn.execute("UPDATE results SET recorded_at = now() WHERE lab_org_id = $1", orgs.lab_b)
    finally:
        await conn.close()
    await refresh(database_url)
    key = ("2021-10-05", "213", str(orgs.lab_b))
    rows = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha24"])
    row = next(r for r in rows if (r.date, r.district_code, r.lab_organisation_id) == key)
    assert (shown(row.tests), shown(row.positives)) == (5, "<5")
    # Withdrawing one of them (now) takes it out again.
    conn = await connect(database_url)
    try:
        await conn.execute(
            """UPDATE results SET state = 'WITHDRAWN', withdrawn_at = now()
               WHERE id = (SELECT r.id FROM results r JOIN samples s ON s.id = r.sample_id
                           WHERE r.lab_org_id = $1 AND r.outcome = 'POSITIVE' AND r.state = 'RELEASED' LIMIT 1)""",
            orgs.lab_b,
        )
    finally:
        await conn.close()
    await refresh(database_url)
    rows = await all_rows(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), world["ha24"])
    row = next(r for r in rows if (r.date, r.district_code, r.lab_organisation_id) == key)
    assert (shown(row.tests), shown(row.positives)) == ("<5", 0)
    answer = await stub.ListTestCounts(pb.ListTestCountsRequest(range=OCTOBER), metadata=world["ha24"])
    assert answer.as_of.ToDatetime(UTC) > datetime.now(UTC) - timedelta(minutes=5)
