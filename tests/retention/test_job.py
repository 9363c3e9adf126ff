"""The retention job as the services run it: in the background of result_svc and publish_svc, by itself,
and past a table lock that would otherwise hold it up."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from prometheus_client import REGISTRY

from services.common.db import connect
from tests.publish_svc.conftest import new_partner, running_platform
from tests.retention.conftest import POLICY, backdate_samples, person_number, person_row, run_result_retention


def erased_rows(kind: str, action: str) -> float:
    return REGISTRY.get_sample_value("covidtest_retention_rows_total", {"kind": kind, "action": action}) or 0.0


async def test_the_services_erase_and_redact_by_themselves(own_database):
    database_url, pool = own_database
    async with running_platform(database_url, RETENTION_INTERVAL_SECONDS="0.2") as platform:
        partner = await new_partner(database_url, personal_data_access=True)
        persons_before = erased_rows("persons", "erased")
        start = await platform.head() + 1
        [barcode] = await platform.release(1, start=person_number())
        await platform.collect(partner["token"], start, 2, pending=True)
        [person_id] = await backdate_samples(database_url, [barcode])
        older = POLICY.personal_data + timedelta(days=1)
        await pool.execute("UPDATE feed_events SET relayed_at = relayed_at - $1::interval", older)
        await pool.execute("UPDATE certificates SET issued_at = issued_at - $1::interval", older)

        deadline = time.monotonic() + 20
        while True:
            state = await pool.fetchrow(
                """SELECT (SELECT erased_at IS NOT NULL FROM persons WHERE id = $1) AS person,
                          (SELECT bool_and(qr_enc IS NULL) FROM certificates WHERE person_id = $1) AS certificate,
                          (SELECT bool_and(redacted_at IS NOT NULL) FROM feed_events WHERE person_id = $1) AS feed""",
                person_id,
            )
            if state["person"] and state["certificate"] and state["feed"]:
                break
            assert time.monotonic() < deadline, f"the services' retention jobs did not finish: {dict(state)}"
            await asyncio.sleep(0.05)
        assert erased_rows("persons", "erased") >= persons_before + 1


async def test_a_table_lock_holds_a_step_up_for_its_lock_timeout_only(platform, database_url):
    """A migration holding a table (ACCESS EXCLUSIVE) must not stall the job behind it (with every later
    query of the services queued behind the job): the step gives up after LOCK_TIMEOUT, the pass goes on
    with the other steps, and the next pass does the work."""
    [barcode] = await platform.release(1, start=person_number())
    [person_id] = await backdate_samples(database_url, [barcode])
    migration = await connect(database_url)
    try:
        async with migration.transaction():
            await migration.execute("LOCK TABLE persons IN ACCESS EXCLUSIVE MODE")
            done = await asyncio.wait_for(run_result_retention(database_url), 15)
            assert done["persons"] == 0 and "audit_log" in done  # the later step still ran
    finally:
        await migration.close()
    await run_result_retention(database_url)
    assert (await person_row(database_url, person_id))["erased_at"] is not None
