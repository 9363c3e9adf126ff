"""The relay lease: a deposed leader cannot commit, and a leader frozen inside a batch is replaced.

Two Relay objects on their own connections stand for two publish_svc replicas; the platform's own relay is
disabled so only they relay. Time passing while a leader is frozen is either real (the frozen transaction)
or the lease row expired by hand (the deposed leader).
"""

import asyncio
import time

import asyncpg
import pytest

from services.common.cache import create_client
from services.common.config import load
from services.publish_svc import repository as repo
from services.publish_svc.config import PublishConfig
from services.publish_svc.relay import LeadershipLost, Relay, connect_relay
from services.registry.certificate_status import StatusCache
from tests.conftest import REDIS_URL, publish_svc_env
from tests.publish_svc.conftest import running_platform


@pytest.fixture(scope="module")
async def quiet_platform(database_url):
    """result_svc + publish_svc whose own relay is off: the outbox fills and only the test relays it."""
    async with running_platform(database_url, RELAY_ENABLED="false") as platform:
        yield platform


@pytest.fixture
async def relays(quiet_platform, database_url, db):
    """Two relays (replicas A and B) with a lease of one second, each on its own relay connection."""
    await db.execute("UPDATE relay_lease SET expires_at = '-infinity'")  # whoever led before is gone
    redis = create_client(REDIS_URL)
    config = load(PublishConfig, publish_svc_env(quiet_platform.env, RELAY_LEASE_SECONDS="1"))
    cache = StatusCache(redis, quiet_platform.env["REDIS_PREFIX"])
    made = []
    for _ in range(2):
        relay = Relay(config, quiet_platform.pii, cache)
        relay.conn = await connect_relay(config.database_url, config.relay_lease_seconds)
        made.append(relay)
    yield made
    for relay in made:
        relay.stop()
        relay.conn.terminate()
    await redis.aclose()


async def test_only_one_relay_holds_the_lease_and_a_deposed_leader_cannot_commit(quiet_platform, relays, db):
    a, b = relays
    assert await a.take_lease(a.conn)
    assert not await b.take_lease(b.conn), "two leaders at once"
    barcodes = await quiet_platform.release(3, start=100)

    # A freezes; its lease runs out (here: at once) and B takes over.
    await db.execute("UPDATE relay_lease SET expires_at = clock_timestamp() - interval '1 second'")
    assert await b.take_lease(b.conn)
    assert b.epoch == a.epoch + 1

    # A wakes up and tries to relay what it had started: its batch rolls back.
    with pytest.raises(LeadershipLost):
        await a.relay_batch(a.conn)
    pending = await db.fetchval(
        "SELECT count(*) FROM outbox o JOIN samples s ON s.id = o.sample_id "
        "WHERE s.barcode = ANY($1::text[]) AND o.relayed_at IS NULL",
        barcodes,
    )
    assert pending == 6  # three registrations, three results
    assert await db.fetchval("SELECT count(*) FROM feed_events WHERE relay_epoch = $1", a.epoch) == 0

    # The new leader relays every event once.
    assert await b.relay_batch(b.conn) == 6
    assert await db.fetchval("SELECT count(*) FROM feed_events WHERE relay_epoch = $1", b.epoch) == 6
    with pytest.raises(LeadershipLost):  # and A stays deposed
        await a.relay_batch(a.conn)


async def test_a_leader_frozen_inside_a_batch_is_replaced_within_its_lease(relays):
    a, b = relays
    assert await a.take_lease(a.conn)
    # A's batch renews the lease under the row lock, then A freezes before COMMIT.
    frozen = a.conn.transaction()
    await frozen.start()
    assert await repo.renew_lease(a.conn, a.epoch, 1.0)
    frozen_at = time.monotonic()
    assert not await b.take_lease(b.conn), "a standby took a lease whose batch is still open"

    # Postgres ends A's idle transaction after a lease; then B's lease attempt succeeds.
    while not await b.take_lease(b.conn):
        assert time.monotonic() - frozen_at < 5, "the standby never took over from a leader frozen mid-batch"
        await asyncio.sleep(0.05)

    # A wakes: its transaction is gone and nothing it held can commit.
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await frozen.commit()


async def test_a_leader_that_stops_cleanly_hands_the_lease_over_at_once(quiet_platform, db):
    await db.execute("UPDATE relay_lease SET expires_at = '-infinity'")
    redis = create_client(REDIS_URL)
    config = load(PublishConfig, publish_svc_env(quiet_platform.env, RELAY_LEASE_SECONDS="600"))
    relay = Relay(config, quiet_platform.pii, StatusCache(redis, quiet_platform.env["REDIS_PREFIX"]))
    task = asyncio.create_task(relay.run())
    try:
        deadline = time.monotonic() + 10
        while not relay.is_leader:
            assert time.monotonic() < deadline, "the relay never took the free lease"
            await asyncio.sleep(0.02)
        assert await db.fetchval("SELECT expires_at > now() + interval '500 seconds' FROM relay_lease")
        relay.stop()
        await asyncio.wait_for(task, 10)
        # Not 600 s of stalled feed for a rolling update: a standby may take the lease now.
        assert await db.fetchval("SELECT expires_at < now() FROM relay_lease")
    finally:
        relay.stop()
        task.cancel()
        await redis.aclose()


async def test_a_leader_whose_session_ended_is_replaced_without_waiting_out_its_lease(quiet_platform, database_url, db):
    await db.execute("UPDATE relay_lease SET expires_at = '-infinity'")
    config = load(PublishConfig, publish_svc_env(quiet_platform.env, RELAY_LEASE_SECONDS="600"))
    redis = create_client(REDIS_URL)
    a, b = (Relay(config, quiet_platform.pii, StatusCache(redis, quiet_platform.env["REDIS_PREFIX"])) for _ in "ab")
    a_conn, b_conn = await connect_relay(config.database_url, 600), await connect_relay(config.database_url, 600)
    try:
        assert await a.take_lease(a_conn)
        assert not await b.take_lease(b_conn)
        a_conn.terminate()  # A's process died: its connection, and so its backend, is gone
        deadline = time.monotonic() + 5
        while not await b.take_lease(b_conn):  # the backend exits a moment after its socket closes
            assert time.monotonic() < deadline, "the standby waited for a dead leader's 600 s lease"
            await asyncio.sleep(0.05)
        assert b.epoch == a.epoch + 1
    finally:
        b_conn.terminate()
        await redis.aclose()
