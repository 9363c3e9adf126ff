"""Retention tests: result_svc + publish_svc on one database, with the retention job run on demand.

The services run with RETENTION_ENABLED=false so that a test decides when a pass runs; a pass then runs the
services' own steps over pools connected as each service's database role, exactly as the job does in the
service (one test also lets the job run inside the services). Data is made old by moving its timestamps
back as the schema owner: the job sees nothing but timestamps.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import asyncpg
import pytest

from services.common.db import connect, create_pool
from services.common.retention import RetentionPolicy, run_pass
from services.publish_svc import retention as publish_retention
from services.result_svc import retention as result_retention
from tests.conftest import PUBLISH_DB_ROLE, RESULT_DB_ROLE
from tests.publish_svc.conftest import running_platform
from tools.servers import dsn_with_user

POLICY = RetentionPolicy(
    personal_data=timedelta(days=180), feed_payload=timedelta(days=30), audit=timedelta(days=1825), batch_size=3
)
# Further back than each period: the personal-data period, and the feed and audit ones.
OLD = timedelta(days=181)


@pytest.fixture(scope="module")
async def platform(database_url):
    async with running_platform(database_url, RETENTION_ENABLED="false") as running:
        yield running


def person_number() -> int:
    """A person of their own for each test (the module's tests share one database)."""
    return random.randrange(10_000_000, 90_000_000)


async def run_result_retention(database_url: str, policy: RetentionPolicy = POLICY) -> dict[str, int]:
    """One pass of result_svc's steps, as result_svc's database role (its grants are part of the test)."""
    pool = await create_pool(dsn_with_user(database_url, RESULT_DB_ROLE), min_size=1, max_size=2)
    try:
        return await run_pass(pool, result_retention.STEPS, policy)
    finally:
        await pool.close()


async def run_publish_retention(database_url: str, pii, policy: RetentionPolicy = POLICY) -> dict[str, int]:
    """One pass of publish_svc's steps, as publish_svc's database role."""
    pool = await create_pool(dsn_with_user(database_url, PUBLISH_DB_ROLE), min_size=1, max_size=2)
    try:
        return await run_pass(pool, publish_retention.steps(pii), policy)
    finally:
        await pool.close()


async def backdate_samples(database_url: str, barcodes: list[str], age: timedelta = OLD) -> list[uuid.UUID]:
    """Move every timestamp of these samples, their persons and their results `age` into the past (as
    if all of it happened then); returns the persons' ids."""
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            persons = await conn.fetch(
                "SELECT DISTINCT person_id FROM samples WHERE barcode = ANY($1::text[])", barcodes
            )
            ids = [r["person_id"] for r in persons]
            await conn.execute(
                "UPDATE persons SET updated_at = updated_at - $2::interval WHERE id = ANY($1::uuid[])", ids, age
            )
            await conn.execute(
                """UPDATE samples SET updated_at = updated_at - $2::interval,
                          registered_at = registered_at - $2::interval, collected_at = collected_at - $2::interval
                   WHERE person_id = ANY($1::uuid[])""",
                ids,
                age,
            )
            await conn.execute(
                """UPDATE results r SET recorded_at = recorded_at - $2::interval, tested_at = tested_at - $2::interval,
                          withdrawn_at = withdrawn_at - $2::interval, superseded_at = superseded_at - $2::interval
                   FROM samples s WHERE s.id = r.sample_id AND s.person_id = ANY($1::uuid[])""",
                ids,
                age,
            )
        return ids
    finally:
        await conn.close()


async def person_row(database_url: str, person_id: uuid.UUID) -> asyncpg.Record:
    conn = await connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM persons WHERE id = $1", person_id)
    finally:
        await conn.close()


async def sample_rows(database_url: str, person_id: uuid.UUID) -> list[asyncpg.Record]:
    conn = await connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM samples WHERE person_id = $1 ORDER BY id", person_id)
    finally:
        await conn.close()
