"""The Redis status write replaces a stored status only when its version is higher (the Lua script)."""

import redis.asyncio as redis

from services.registry.certificate_status import StatusCache, StatusEntry
from tests.conftest import REDIS_URL

EXPIRES_AT = 4_000_000_000  # far in the future: the keys' PXAT expiry never fires during the test


async def test_an_older_version_never_replaces_a_newer_one(redis_prefix):
    client = redis.Redis.from_url(REDIS_URL)
    cache = StatusCache(client, redis_prefix)
    revoked, fresh = "URN:UVCI:01:VN:ORDER#1", "URN:UVCI:01:VN:ORDER#2"
    try:
        assert await cache.put_many([StatusEntry(revoked, "REVOKED", 2, EXPIRES_AT)]) == 1
        # A delayed writer's older VALID (version 1), alone and in a batch with a new key.
        stale = await cache.put_many([StatusEntry(revoked, "VALID", 1, EXPIRES_AT)])
        assert await client.get(cache.key(revoked)) == f"2:REVOKED:{EXPIRES_AT}".encode()
        assert stale == 0
        written = await cache.put_many(
            [StatusEntry(revoked, "VALID", 1, EXPIRES_AT), StatusEntry(fresh, "VALID", 1, EXPIRES_AT)]
        )
        assert written == 1
        # The same version is not "newer" either.
        assert await cache.put_many([StatusEntry(revoked, "VALID", 2, EXPIRES_AT)]) == 0

        assert await client.get(cache.key(revoked)) == f"2:REVOKED:{EXPIRES_AT}".encode()
        stored = await cache.get(revoked)
        assert (stored.status, stored.version) == ("REVOKED", 2)
        assert await client.get(cache.key(fresh)) == f"1:VALID:{EXPIRES_AT}".encode()

        # A higher version does replace it (the check is "only if newer", not "never").
        assert await cache.put_many([StatusEntry(revoked, "VALID", 3, EXPIRES_AT)]) == 1
        assert await client.get(cache.key(revoked)) == f"3:VALID:{EXPIRES_AT}".encode()
    finally:
        await client.delete(cache.key(revoked), cache.key(fresh))
        await client.aclose()
