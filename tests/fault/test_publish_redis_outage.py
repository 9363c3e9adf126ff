"""Redis stopped while the relay works: the feed is unaffected and the cache catches up afterwards."""

import asyncio
import time
import uuid

from services.common.auth import Role
from services.common.cache import create_client
from services.registry.certificate_status import StatusCache
from tests.conftest import make_principal
from tests.publish_svc.conftest import activate_new_key, new_partner, start_platform, stop_platform


async def test_feed_goes_on_without_redis_and_statuses_catch_up(database_url, db, private_redis):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    platform = await start_platform(database_url, prefix, REDIS_URL=private_redis.url())
    try:
        platform.key = await activate_new_key(database_url, platform.env)
        platform.unit = await make_principal(database_url, Role.SAMPLER)
        platform.lab = await make_principal(database_url, Role.LAB)
        partner = await new_partner(database_url, personal_data_access=False)
        await platform.release(3, start=1)
        before = await platform.collect(partner["token"], 1, 3)

        await asyncio.to_thread(private_redis.stop)
        await platform.release(5, start=100)
        # The feed does not wait for Redis: five registrations and five results, gapless after the first six.
        everything = await platform.collect(partner["token"], 7, 10, pending=True)
        assert [e.position for e in everything] == list(range(7, 17))
        during = [e for e in everything if e.HasField("result")]
        assert len(during) == 5
        # Redis missed these statuses: the relay marks them behind once its write fails, which is after
        # the commit that delivered the events, so wait for the mark.
        deadline = time.monotonic() + 10
        while not await db.fetchval("SELECT count(*) FROM certificates WHERE cached_version < status_version"):
            assert time.monotonic() < deadline, "the statuses Redis missed were never marked behind"
            await asyncio.sleep(0.05)

        await asyncio.to_thread(private_redis.start)  # empty: no persistence
        client = create_client(private_redis.url())
        cache = StatusCache(client, prefix)
        try:
            deadline = time.monotonic() + 15
            uvcis = [e.certificate.certificate_id for e in during]
            while True:
                cached = [await cache.get(u) for u in uvcis]
                if all(c is not None for c in cached) and not await db.fetchval(
                    "SELECT count(*) FROM certificates WHERE cached_version < status_version"
                ):
                    break
                assert time.monotonic() < deadline, "the status cache did not catch up after Redis came back"
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        # Those relayed during the outage were caught up, with their versions. (Statuses written before
        # the outage went with Redis' memory; verify_svc reads them from Postgres on a miss.)
        assert all((c.status, c.version) == ("VALID", 1) for c in cached) and len(before) == 3
    finally:
        await stop_platform(platform)
