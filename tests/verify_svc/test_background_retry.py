"""verify_svc's background work outlives a Postgres that refuses statements for a while."""

import asyncio
import logging
import time
from datetime import UTC, datetime

from prometheus_client import REGISTRY

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
            loaded_at = _trust_list_loaded()  # what TrustListStale alerts on: it stops moving meanwhile
            assert loaded_at is not None and time.time() - loaded_at < 60
        finally:
            await db.execute("ALTER TABLE province_rules_away RENAME TO province_rules")
        stale = store.snapshot
        await _until(lambda: store.snapshot is not stale, task, "the refresh did not resume")
        assert store.snapshot.rules, "the default province rules are back in the snapshot"
        assert _trust_list_loaded() > loaded_at
    finally:
        store.stop()
        await asyncio.wait_for(task, 5)


def _trust_list_loaded() -> float | None:
    return REGISTRY.get_sample_value("covidtest_trust_list_loaded_seconds")


class _CountingFollower:
    channels = ("checkpoint_bundle",)

    def __init__(self) -> None:
        self.reloads = 0

    async def reload(self, conn) -> None:
        self.reloads += 1


async def test_a_notification_reloads_only_what_it_names(database_url, db):
    """A new bundle version (NOTIFY checkpoint_bundle, every few seconds while results change) reloads the
    bundle, not the trust snapshot: replacing the snapshot would drop the verdicts kept for repeat scans.
    A trust-list change replaces the snapshot."""
    follower = _CountingFollower()
    store = TrustStore(database_url, refresh_seconds=3600, followers=[follower])
    task = asyncio.create_task(store.run())
    try:
        await asyncio.wait_for(store.loaded.wait(), 10)
        await _until(lambda: follower.reloads == 1, task, "the follower was not loaded at start")
        snapshot = store.snapshot
        await db.execute("NOTIFY checkpoint_bundle")
        await _until(lambda: follower.reloads == 2, task, "the bundle notification was not followed")
        assert store.snapshot is snapshot
        await db.execute("NOTIFY trust_list")
        await _until(lambda: store.snapshot is not snapshot, task, "the trust-list notification was not followed")
        assert follower.reloads == 2
    finally:
        store.stop()
        await asyncio.wait_for(task, 5)
