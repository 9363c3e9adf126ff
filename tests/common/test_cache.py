"""The Redis client factory, against the real Redis."""

import asyncio
import uuid

from services.common.cache import create_client
from tests.conftest import REDIS_URL


async def _connections_named(client, name: str) -> int:
    return sum(1 for c in await client.client_list() if c.get("name") == name)


async def test_a_burst_of_commands_shares_a_bounded_pool(redis_prefix):
    name = f"pool-{uuid.uuid4().hex[:8]}"
    client = create_client(REDIS_URL, max_connections=4, client_name=name)
    observer = create_client(REDIS_URL)
    key = f"{redis_prefix}:burst"
    try:
        await client.set(key, b"1")
        # 200 concurrent commands, each holding its connection for a moment (a slow Redis): all
        # succeed, over at most four connections.
        results = await asyncio.gather(
            *(client.eval("redis.call('GET', KEYS[1]); return 1", 1, key) for _ in range(200))
        )
        assert results == [1] * 200
        assert 1 <= await _connections_named(observer, name) <= 4
    finally:
        await client.delete(key)
        await client.aclose()
        await observer.aclose()
