"""verify_svc's background work outlives a Postgres that refuses statements for a while."""

import asyncio
import logging
import time
from datetime import UTC, datetime

from services.common.auth import Role
from services.verify_svc.service import HourlyCounts
from services.verify_svc.trust import TrustStore
from tests.conftest import make_principal
from tests.pg_refusal import refusing


async def _until(condition, task: asyncio.Task, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert not task.done(), f"the background task ended: {task}"
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)  # polling with a deadline


def _logged(caplog, error: str):
    return lambda: any(getattr(r, "fields", {}).get("error") == error for r in caplog.records)


async def test_verdict_counts_are_kept_while_postgres_refuses_them(database_url, db, caplog):
    caplog.set_level(logging.WARNING, logger="covidtest.verify")
    device = await make_principal(database_url, Role.CHECKPOINT)
    counts = HourlyCounts(db)
    counts.add(device["id"], "VALID", datetime.now(UTC))
    async with refusing(db, "verification_counts", "INSERT"):
        await counts.flush()
    assert _logged(caplog, "ReadOnlySQLTransactionError")()
    counts.add(device["id"], "VALID", datetime.now(UTC))
    await counts.flush()
    total = await db.fetchval("SELECT sum(count) FROM verification_counts WHERE checkpoint_id = $1::uuid", device["id"])
    assert total == 2  # the refused count was kept and written with the next flush


async def test_trust_list_refresh_resumes_after_postgres_refused_it(database_url, db, caplog):
    caplog.set_level(logging.WARNING, logger="covidtest")
    store = TrustStore(database_url, refresh_seconds=0.05)
    task = asyncio.create_task(store.run())
    try:
        await asyncio.wait_for(store.loaded.wait(), 10)
        # A migration in flight: the table the refresh reads is briefly not there.
        await db.execute("ALTER TABLE province_rules RENAME TO province_rules_away")
        try:
            await _until(_logged(caplog, "UndefinedTableError"), task, "the failed refresh was not reported")
        finally:
            await db.execute("ALTER TABLE province_rules_away RENAME TO province_rules")
        stale = store.snapshot
        await _until(lambda: store.snapshot is not stale, task, "the refresh did not resume")
        assert store.snapshot.rules, "the default province rules are back in the snapshot"
    finally:
        store.stop()
        await asyncio.wait_for(task, 5)
