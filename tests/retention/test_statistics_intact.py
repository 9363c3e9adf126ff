"""Retention leaves the health department's statistics intact: the figures before erasing every person of a
generated record equal the figures after, and the summary rebuilt from scratch afterwards is the same
table (nothing the summary is computed from was removed)."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from services.common.db import connect
from services.gen.covidtest.statistics.v1 import statistics_service_pb2 as pb
from services.gen.covidtest.statistics.v1 import statistics_service_pb2_grpc
from tests.conftest import bearer, service_env, start_result_svc
from tests.retention.conftest import OLD, run_result_retention
from tests.statistics import dataset
from tests.statistics.conftest import refresh
from tests.statistics.dataset import D1, D2

OCTOBER = pb.DayRange(from_date="2021-10-01", to_date="2021-10-31")


async def every_row(call, request, metadata) -> list:
    rows, token = [], ""
    while True:
        request.page_token = token
        page = await call(request, metadata=metadata)
        rows += list(page.rows)
        if not (token := page.next_page_token):
            return rows


async def summary_table(database_url: str) -> list[tuple]:
    conn = await connect(database_url)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT * FROM statistics_daily ORDER BY 1, 2, 3, 4")]
    finally:
        await conn.close()


@pytest.fixture
async def record(own_database):
    """A generated record of two days (tests, pools, an amendment, a withdrawal) and a lab backlog."""
    database_url, _pool = own_database
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            unit = await dataset.organisation(conn, "SAMPLING_UNIT", "24")
            lab = await dataset.organisation(conn, "LAB", "24")
            orgs = dataset.Orgs(unit=unit, lab_a=lab, lab_b=lab, lab_c=lab)
            token = await dataset.health_authority(conn, "24")
            outcomes = ["POSITIVE"] * 6 + ["NEGATIVE"] * 14
            await dataset.tested(conn, orgs, lab, "24", "213", D1, outcomes, [float(h) for h in range(1, 21)])
            await dataset.amended(conn, orgs, lab, "24", "213", D1)
            await dataset.withdrawn(conn, orgs, lab, "24", "213", D1)
            await dataset.pools(conn, orgs, lab, "24", "215", D2, "NEGATIVE", 6)
            await dataset.pools(conn, orgs, lab, "24", "215", D2, "POSITIVE", 5)
            await dataset.waiting(conn, orgs, lab, "24", timedelta(hours=30), 7)
            # The record's results date from 2021; its rows were written now: make everything but the
            # backlog (samples still waiting) as old as its dates.
            await conn.execute(
                """UPDATE persons SET updated_at = updated_at - $1::interval
                   WHERE id IN (SELECT person_id FROM samples WHERE state <> 'REGISTERED')""",
                OLD,
            )
            await conn.execute(
                "UPDATE samples SET updated_at = updated_at - $1::interval WHERE state <> 'REGISTERED'", OLD
            )
    finally:
        await conn.close()
    yield database_url, bearer(token)


async def test_statistics_are_the_same_after_every_person_of_the_record_is_erased(record):
    database_url, health_authority = record
    await refresh(database_url, rebuild=True)
    server = await start_result_svc(service_env(database_url, RETENTION_ENABLED="false"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = statistics_service_pb2_grpc.StatisticsServiceStub(channel)

            async def figures():
                return (
                    await every_row(stub.ListTestCounts, pb.ListTestCountsRequest(range=OCTOBER), health_authority),
                    await every_row(stub.ListTurnaround, pb.ListTurnaroundRequest(range=OCTOBER), health_authority),
                    list((await stub.GetLabBacklog(pb.GetLabBacklogRequest(), metadata=health_authority)).labs),
                )

            before, table_before = await figures(), await summary_table(database_url)
            assert before[0] and before[1] and before[2]  # the record is counted at all

            done = await run_result_retention(database_url)
            await refresh(database_url, rebuild=True)  # the summary recomputed from what is left

            assert done["persons"] >= 20
            conn = await connect(database_url)
            try:
                left = await conn.fetchval(
                    "SELECT count(*) FROM persons p JOIN samples s ON s.person_id = p.id "
                    "WHERE s.state <> 'REGISTERED' AND p.erased_at IS NULL"
                )
            finally:
                await conn.close()
            assert left == 0  # every resulted person of the record is erased
            assert await summary_table(database_url) == table_before
            assert await figures() == before
    finally:
        await server.stop(0)
