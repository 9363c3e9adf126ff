"""The lean Redis reader of the verify hot path, against the real Redis and a stopped one."""

import asyncio
import time

import pytest
import redis.asyncio as redis

from services.common.redis_reader import RedisReader
from tests.conftest import REDIS_URL
from tools.servers import free_port


async def test_mget_pipelines_many_concurrent_reads(redis_prefix):
    client = redis.Redis.from_url(REDIS_URL)
    await client.mset({f"{redis_prefix}:a": b"1:VALID:9", f"{redis_prefix}:b": b"2:REVOKED:9"})
    await client.aclose()
    reader = RedisReader(REDIS_URL)
    try:
        keys = [f"{redis_prefix}:a", f"{redis_prefix}:missing", f"{redis_prefix}:b"]
        assert await reader.mget(keys) == [b"1:VALID:9", None, b"2:REVOKED:9"]
        answers = await asyncio.gather(*(reader.mget([keys[i % 3]]) for i in range(300)))
        assert answers == [[[b"1:VALID:9"], [None], [b"2:REVOKED:9"]][i % 3][0:1] for i in range(300)]
    finally:
        await reader.aclose()


async def test_unreachable_redis_fails_fast_and_is_retried_later():
    reader = RedisReader(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    with pytest.raises(ConnectionError):
        await reader.mget(["x"])
    started = time.monotonic()
    with pytest.raises(ConnectionError):  # within the retry pause: no new connect attempt
        await reader.mget(["x"])
    assert time.monotonic() - started < 0.05


def test_only_plain_redis_urls():
    with pytest.raises(ValueError):
        RedisReader("rediss://example:6380/0")
