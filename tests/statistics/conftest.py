"""The generated record every statistics test reads, a refreshed summary, and callers of each role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.statistics.v1 import statistics_service_pb2_grpc
from services.statistics import repository, summary
from tests.conftest import bearer, make_principal
from tests.statistics import dataset
from tests.statistics.dataset import D1, D2


async def refresh(database_url: str, *, rebuild: bool = False) -> None:
    """Bring the summary up to date now (waiting out the server's own refresher if it holds the row)."""
    conn = await connect(database_url)
    try:
        for _ in range(100):
            async with conn.transaction():
                if rebuild:
                    await repository.reset_progress(conn)
                if await summary.refresh(conn) is not None:
                    return
        raise AssertionError("the summary stayed locked")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def world(database_url, result_server):
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            orgs = dataset.Orgs(
                unit=await dataset.organisation(conn, "SAMPLING_UNIT", "24"),
                lab_a=await dataset.organisation(conn, "LAB", "24"),
                lab_b=await dataset.organisation(conn, "LAB", "24"),
                lab_c=await dataset.organisation(conn, "LAB", "26"),
            )
            ha24 = await dataset.health_authority(conn, "24")
            ha26 = await dataset.health_authority(conn, "26")
            a, b, c = orgs.lab_a, orgs.lab_b, orgs.lab_c
            # 12 tests, 3 positive: tests shown, positives and positivity suppressed.
            await dataset.tested(conn, orgs, a, "24", "213", D1, ["NEGATIVE"] * 9 + ["POSITIVE"] * 3)
            # 3 tests, none positive: tests suppressed, 0 positives shown, positivity and turnaround suppressed.
            await dataset.tested(conn, orgs, b, "24", "213", D1, ["NEGATIVE"] * 3)
            # 20 tests with turnarounds of 1..20 h, 6 positive; an amended one (first version after 2 h)
            # adds a positive; a withdrawn one counts nowhere.
            await dataset.tested(
                conn, orgs, a, "24", "214", D1, ["POSITIVE"] * 6 + ["NEGATIVE"] * 14, [float(h) for h in range(1, 21)]
            )
            await dataset.amended(conn, orgs, a, "24", "214", D1)
            await dataset.withdrawn(conn, orgs, a, "24", "214", D1)
            # Pools: 6 negative and 5 positive pools of 2 (12 released negatives; 10 members to retest).
            await dataset.pools(conn, orgs, a, "24", "215", D2, "NEGATIVE", 6)
            await dataset.pools(conn, orgs, a, "24", "215", D2, "POSITIVE", 5)
            # 6 negative and 2 positive pools: the pool positivity rests on a suppressed count.
            await dataset.pools(conn, orgs, a, "24", "216", D2, "NEGATIVE", 6)
            await dataset.pools(conn, orgs, a, "24", "216", D2, "POSITIVE", 2)
            # Province 26: never seen by 24.
            await dataset.tested(conn, orgs, c, "26", "001", D1, ["NEGATIVE"] * 25 + ["POSITIVE"] * 5)
            # Backlog.
            await dataset.waiting(conn, orgs, a, "24", timedelta(hours=2), 7)
            await dataset.waiting(conn, orgs, a, "24", timedelta(hours=30), 2)
            await dataset.waiting(conn, orgs, a, "24", timedelta(hours=60), 6)
            await dataset.waiting(conn, orgs, c, "26", timedelta(hours=2), 8)
            # Verdicts.
            dev24 = uuid.uuid4()
            dev26 = uuid.uuid4()
            for dev, province in ((dev24, "24"), (dev26, "26")):
                await conn.execute(
                    "INSERT INTO checkpoint_devices (id, name, province_code) VALUES ($1, $2, $3)",
                    dev,
                    f"dev-{dev.hex[:8]}",
                    province,
                )
            hour = datetime(2021, 10, 5, 2, tzinfo=UTC)
            await dataset.verdicts(conn, dev24, hour, {"VALID": 50, "REVOKED": 2})
            await dataset.verdicts(conn, dev24, hour + timedelta(hours=1), {"VALID": 7})
            await dataset.verdicts(conn, dev26, hour, {"VALID": 40})
    finally:
        await conn.close()
    await refresh(database_url, rebuild=True)
    lab = await make_principal(database_url, Role.LAB)
    partner = await make_principal(database_url, Role.PARTNER)
    operator = await make_principal(database_url, Role.OPERATOR)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
        yield {
            "stub": statistics_service_pb2_grpc.StatisticsServiceStub(channel),
            "orgs": orgs,
            "ha24": bearer(ha24),
            "ha26": bearer(ha26),
            "lab": bearer(lab["token"]),
            "partner": bearer(partner["token"]),
            "operator": bearer(operator["token"]),
            "dev24": dev24,
            "dev26": dev26,
        }
