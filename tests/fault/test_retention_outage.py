"""The retention job survives a Postgres outage: it logs, waits for its next pass and then does its work;
it never ends for good (personal data would then stay past the policy, silently)."""

import asyncio
import logging
import time

from services.common import migrate
from services.common.db import connect, create_pool
from services.common.retention import RetentionJob
from services.result_svc import retention as result_retention
from tests.conftest import RESULT_DB_ROLE
from tests.retention.conftest import OLD, POLICY
from tests.statistics import dataset
from tests.statistics.dataset import D1
from tools.servers import dsn_with_user


async def until(predicate, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_retention_job_outlives_a_postgres_outage(private_postgres, caplog):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    pool = await create_pool(dsn_with_user(dsn, RESULT_DB_ROLE), min_size=1, max_size=2)
    job = RetentionJob(pool, result_retention.STEPS, POLICY, interval_s=0.1)
    caplog.set_level(logging.WARNING, logger="covidtest.retention")
    task = asyncio.create_task(job.run())
    try:
        private_postgres.stop("immediate")

        async def failed_once():
            return any("retention pass failed" in r.getMessage() for r in caplog.records)

        await until(failed_once, "the job never met the outage")
        private_postgres.start()
        conn = await connect(dsn)
        try:
            async with conn.transaction():
                unit = await dataset.organisation(conn, "SAMPLING_UNIT", "24")
                lab = await dataset.organisation(conn, "LAB", "24")
                orgs = dataset.Orgs(unit=unit, lab_a=lab, lab_b=lab, lab_c=lab)
                await dataset.tested(conn, orgs, lab, "24", "213", D1, ["NEGATIVE"] * 3)
                await conn.execute("UPDATE persons SET updated_at = updated_at - $1::interval", OLD)
                await conn.execute("UPDATE samples SET updated_at = updated_at - $1::interval", OLD)
        finally:
            await conn.close()

        async def all_erased():
            check = await connect(dsn)
            try:
                return await check.fetchval("SELECT count(*) FROM persons WHERE erased_at IS NULL") == 0
            finally:
                await check.close()

        await until(all_erased, "the job did not resume after the outage")
        assert not task.done()
    finally:
        job.stop()
        await asyncio.wait_for(task, 10)
        await pool.close()
