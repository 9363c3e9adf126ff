"""The checkpoint-bundle builder under contention and a frozen peer: every publish_svc replica builds, versions
stay gapless and single, and a builder frozen inside its transaction blocks the others only until Postgres
ends its idle session (LOCK_IDLE_TIMEOUT_S; 1 s here)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import asyncpg

from services.common.db import connect
from services.publish_svc import bundle_repository as repo
from services.publish_svc.bundle_builder import BundleBuilder
from services.registry import signing_keys
from services.registry.key_sealing import SigningKeyOpener, parse_kek_private
from tests.conftest import fresh_secrets
from tests.publish_svc.conftest import activate_new_key


def builder(pool: asyncpg.Pool, env: dict[str, str], idle_timeout_s: float = 1.0) -> BundleBuilder:
    return BundleBuilder(
        pool,
        SigningKeyOpener(parse_kek_private(env["SIGNING_KEYS_KEK"])),
        None,
        build_seconds=0.1,
        validity=timedelta(hours=24),
        reissue=timedelta(hours=1),
        deltas_kept=100,
        lock_idle_timeout_s=idle_timeout_s,
    )


async def _change(dsn: str) -> None:
    """A change every bundle must carry: another DCC key on the trust list."""
    await activate_new_key(dsn, fresh_secrets())


async def test_replicas_building_at_once_issue_one_gapless_version_per_change(own_database):
    dsn, pool = own_database
    env = fresh_secrets()
    await activate_new_key(dsn, env, purpose=signing_keys.BUNDLE)
    builders = [builder(pool, env) for _ in range(3)]
    for _ in range(3):
        await _change(dsn)
        issued = await asyncio.gather(*(b.build() for b in builders))
        assert sum(v is not None for v in issued) <= 1, issued
        # Whoever skipped (locked out, or found the content current) has nothing left to do.
        assert await builders[0].build() is None
    versions = [r["version"] for r in await pool.fetch("SELECT version FROM checkpoint_bundles ORDER BY version")]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) == 3


async def test_a_builder_frozen_inside_its_transaction_holds_the_others_back_only_briefly(own_database):
    dsn, pool = own_database
    env = fresh_secrets()
    await activate_new_key(dsn, env, purpose=signing_keys.BUNDLE)
    frozen = await connect(dsn)
    transaction = frozen.transaction()
    await transaction.start()
    # What a builder's session holds when its process freezes right after taking the lock.
    assert await repo.try_lock(frozen, idle_timeout_s=1.0)
    live = builder(pool, env)
    # Locked out: the live builder gives up at once instead of waiting on the lock.
    assert await asyncio.wait_for(live.build(), 5) is None
    deadline = time.monotonic() + 15
    while (issued := await live.build()) is None:
        assert time.monotonic() < deadline, "the frozen builder's lock was never released"
        await asyncio.sleep(0.1)
    assert issued == 1
    assert frozen.is_closed() or not await _alive(frozen)
    frozen.terminate()


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), 2)
        return True
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        return False
