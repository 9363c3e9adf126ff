"""Fixed-window rate limits per caller (partner lookups, checkpoint devices).

`shared=True` counts in Redis, so a limit holds across replicas (partner lookups: few calls, and
enumeration must be stopped platform-wide); when Redis is unreachable it counts in this process
instead (so it still holds per replica) rather than switching off. `shared=False` counts only in this
process: for checkpoint scans, where a Redis round trip per scan would double the cost of a cache-hit
verification, and a device's gRPC connection stays on one replica anyway. Keys hold only the hashed
caller id and the window number.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.common.cache import cache_key
from services.common.errors import ResourceExhausted

log = logging.getLogger("covidtest.ratelimit")


class RateLimiter:
    def __init__(
        self, client: redis.Redis, prefix: str, name: str, limit: int, window_s: int = 60, shared: bool = True
    ):
        self._redis = client
        self._prefix = prefix
        self._name = name
        self._limit = limit
        self._window = window_s
        self._local: dict[tuple[str, int], int] = {}
        self._shared = shared

    async def check(self, subject: str) -> None:
        """Count one call of `subject`; ResourceExhausted (RATE_LIMITED, RetryInfo) beyond the limit."""
        now = time.time()
        window = int(now // self._window)
        count = None
        if self._shared:
            try:
                key = cache_key(self._prefix, f"rl-{self._name}", 1, subject, str(window))
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, self._window * 2)
                    count, _ = await pipe.execute()
            except (RedisError, OSError):
                count = None
        if count is None:
            if len(self._local) > 100_000:
                self._local.clear()
            count = self._local[(subject, window)] = self._local.get((subject, window), 0) + 1
        if count > self._limit:
            raise ResourceExhausted(
                f"rate limit of {self._limit} calls per {self._window} s exceeded",
                reason="RATE_LIMITED",
                retry_after_s=(window + 1) * self._window - now,
            )
