"""The lean Redis reader of the verify hot path, against the real Redis and a stopped one."""

import asyncio
import os
import signal
import time

import pytest
import redis.asyncio as redis

from services.common.redis_reader import RedisReader
from tests.conftest import REDIS_URL
from tools.servers import RedisServer, free_port


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


async def test_hung_redis_times_out_and_the_reader_recovers(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    reader = RedisReader(server.url(), timeout_s=0.2)
    pid = int(server.pidfile.read_text())
    try:
        assert await reader.mget(["x"]) == [None]
        os.kill(pid, signal.SIGSTOP)  # Redis alive but not answering
        started = time.monotonic()
        pending = [asyncio.ensure_future(reader.mget([f"k{i}"])) for i in range(5)]
        for call in pending:
            with pytest.raises(ConnectionError):
                await call
        assert time.monotonic() - started < 1.0
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while True:  # the reader reconnects once its retry pause is over
            try:
                assert await reader.mget(["x"]) == [None]
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the reader did not recover"
                await asyncio.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
        await reader.aclose()
        server.stop()


def test_only_plain_redis_urls():
    with pytest.raises(ValueError):
        RedisReader("rediss://example:6380/0")
