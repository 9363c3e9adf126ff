"""The Redis status cache: a write replaces a stored status only when its version is higher (the Lua
script), and a refill is refused when its read is older than the floor the relay raised, key or no key."""

import pytest
import redis.asyncio as redis

from services.registry.certificate_status import StatusCache, StatusEntry
from tests.conftest import REDIS_URL

EXPIRES_AT = 4_000_000_000  # far in the future: the keys' PXAT expiry never fires during the test


@pytest.fixture
async def client():
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    await connection.aclose()  # the redis_prefix fixture deletes the keys


@pytest.fixture
def cache(client, redis_prefix):
    return StatusCache(client, redis_prefix)


async def test_an_older_version_never_replaces_a_newer_one(cache, client):
    revoked, fresh = "URN:UVCI:01:VN:ORDER#1", "URN:UVCI:01:VN:ORDER#2"
    assert await cache.put_many([StatusEntry(revoked, "REVOKED", 2, EXPIRES_AT)], feed_head=2) == 1
    # A delayed writer's older VALID (version 1), alone and in a batch with a new key.
    stale = await cache.put_many([StatusEntry(revoked, "VALID", 1, EXPIRES_AT)], feed_head=2)
    assert await client.get(cache.key(revoked)) == f"2:REVOKED:{EXPIRES_AT}".encode()
    assert stale == 0
    written = await cache.put_many(
        [StatusEntry(revoked, "VALID", 1, EXPIRES_AT), StatusEntry(fresh, "VALID", 1, EXPIRES_AT)], feed_head=2
    )
    assert written == 1
    # The same version is not "newer" either.
    assert await cache.put_many([StatusEntry(revoked, "VALID", 2, EXPIRES_AT)], feed_head=2) == 0

    assert await client.get(cache.key(revoked)) == f"2:REVOKED:{EXPIRES_AT}".encode()
    stored = await cache.get(revoked)
    assert (stored.status, stored.version) == ("REVOKED", 2)
    assert await client.get(cache.key(fresh)) == f"1:VALID:{EXPIRES_AT}".encode()

    # A higher version does replace it (the check is "only if newer", not "never"); a refill as well.
    assert await cache.put_many([StatusEntry(revoked, "VALID", 3, EXPIRES_AT)], feed_head=3) == 1
    assert await client.get(cache.key(revoked)) == f"3:VALID:{EXPIRES_AT}".encode()
    assert await cache.refill_many([StatusEntry(revoked, "REVOKED", 4, EXPIRES_AT)], read_at_feed_head=3) == 1
    assert await cache.refill_many([StatusEntry(revoked, "VALID", 3, EXPIRES_AT)], read_at_feed_head=9) == 0
    assert await client.get(cache.key(revoked)) == f"4:REVOKED:{EXPIRES_AT}".encode()


async def test_a_refill_read_before_a_revocation_cannot_fill_its_lost_key(cache, client):
    certificate = "URN:UVCI:01:VN:LATE#1"
    # The relay issued the certificate at feed position 10 and revoked it at 12.
    await cache.put_many([StatusEntry(certificate, "VALID", 1, EXPIRES_AT)], feed_head=10)
    await cache.put_many([StatusEntry(certificate, "REVOKED", 2, EXPIRES_AT)], feed_head=12)
    await client.delete(cache.key(certificate))  # evicted, flushed, or lost in a failover

    # A read from before the revocation (a slow read, a lagging replica) comes back late: refused.
    late = await cache.refill_many([StatusEntry(certificate, "VALID", 1, EXPIRES_AT)], read_at_feed_head=11)
    assert late is None
    assert await client.get(cache.key(certificate)) is None

    # A read that saw the revocation fills the key.
    assert await cache.refill_many([StatusEntry(certificate, "REVOKED", 2, EXPIRES_AT)], read_at_feed_head=12) == 1
    assert (await cache.get(certificate)).status == "REVOKED"


async def test_without_a_floor_no_refill_is_written_until_the_relay_raises_it(cache):
    certificate = "URN:UVCI:01:VN:FLOOR#1"
    # A fresh or flushed Redis: nothing says how old a read may be, so nothing is written.
    assert await cache.refill_many([StatusEntry(certificate, "VALID", 1, EXPIRES_AT)], read_at_feed_head=50) is None
    assert await cache.get(certificate) is None
    await cache.raise_floor(40)
    await cache.raise_floor(30)  # never lowered
    assert await cache.refill_many([StatusEntry(certificate, "VALID", 1, EXPIRES_AT)], read_at_feed_head=35) is None
    assert await cache.refill_many([StatusEntry(certificate, "VALID", 1, EXPIRES_AT)], read_at_feed_head=40) == 1
