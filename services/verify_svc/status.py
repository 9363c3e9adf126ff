"""The live status of the platform's own certificates: Redis first, Postgres on a miss.

- Hit: the status the relay wrote (version-checked) — no database call. A status read before and
  not changed since comes from the reader's local mirror, which Redis keeps fresh by invalidation
  messages (services.verify_svc.redis_reader): no round trip. Otherwise the lookups of one event-loop
  tick share one MGET: under load, one Redis round trip serves many concurrent scans.
- Miss: Postgres (READ_DATABASE_URL, a read replica in production; the query is in
  services.verify_svc.repository). A replica may lag, or have stopped replaying: its VALID could be a
  status the primary has since revoked. So a read from a replica is fenced by the feed head (every
  revocation is a feed event, committed with the status): the primary's head is read first, and the
  replica's statuses count only if their snapshot's head has reached it; a replica still behind after
  REPLICA_CATCH_UP_SECONDS is passed over and the statuses are read from the primary (counted in
  covidtest_status_replica_behind_total). The primary unreachable: no fence, so no status (UNCHECKED).
  Misses of one event-loop tick are batched into one `uvci = ANY($1)` query, and concurrent misses of
  one certificate share that single read (single flight). What Postgres returns is written back to Redis
  with the same version check, and only if the read is not older than the refill floor (a late or
  lagging read never writes an old status into a lost key); a certificate Postgres does not know is
  remembered as unknown for STATUS_NEGATIVE_CACHE_SECONDS.
- Redis down: straight to Postgres (source DATABASE). Postgres down or slower than
  STATUS_DB_TIMEOUT_SECONDS too: no status (source UNCHECKED); the verdict then rests on signature and
  rules. Either dependency down shows as 0 in the covidtest_dependency_up gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.common.db import CONNECTION_ERRORS, create_pool
from services.common.errors import Unavailable
from services.common.metrics import DEPENDENCY_UP
from services.registry.certificate_status import CachedStatus, StatusCache, StatusEntry
from services.verify_svc import repository
from services.verify_svc.repository import StoredStatus

log = logging.getLogger("covidtest.status")

CACHE, DATABASE, UNCHECKED = "CACHE", "DATABASE", "UNCHECKED"
_NEGATIVE_LIMIT = 100_000
_CATCH_UP_POLL_S = 0.005
REPLICA_BEHIND = Counter(
    "covidtest_status_replica_behind_total",
    "Status reads the read replica could not serve current (behind the primary's feed head): read from the primary",
)
# What means "no status from Postgres now" (the verdict is then given UNCHECKED): too slow, or not reachable.
_DATABASE_DOWN: tuple[type[BaseException], ...] = (TimeoutError, Unavailable, *CONNECTION_ERRORS)

V = TypeVar("V")


@dataclass(frozen=True)
class Status:
    status: str | None  # VALID, REVOKED, or None when unknown or unchecked
    source: str  # CACHE, DATABASE or UNCHECKED


class TickBatch(Generic[V]):
    """Lookups of one event-loop tick in one call of `fetch_many(keys) -> {key: value}`; concurrent
    lookups of one key share its future (single flight). A failure reaches every waiter."""

    def __init__(self, fetch_many: Callable[[list[str]], Awaitable[Mapping[str, V | None]]]):
        self._fetch_many = fetch_many
        self._pending: dict[str, asyncio.Future[V | None]] = {}

    def get(self, key: str) -> asyncio.Future[V | None]:
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
            future = self._pending[key] = loop.create_future()
        return future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            found = await self._fetch_many(list(batch))
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of the failure
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # a waiter that timed out must not leave it unretrieved
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))


class StatusLookup:
    """`dsn`: where statuses are read on a cache miss. `primary`: when `dsn` is a read replica, the primary's
    pool, which fences every replica read (module docstring); None when `dsn` is the primary itself."""

    def __init__(
        self,
        cache: StatusCache,
        dsn: str,
        negative_ttl_s: float,
        db_timeout_s: float,
        primary: asyncpg.Pool | None = None,
        catch_up_s: float = 0.02,
    ):
        self._cache = cache
        self._dsn = dsn
        self._primary = primary
        self._catch_up = catch_up_s
        self._negative_ttl = negative_ttl_s
        self._db_timeout = db_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._cached: TickBatch[CachedStatus] = TickBatch(self._cache_many)  # one MGET per tick
        self._read: TickBatch[StoredStatus] = TickBatch(self._read_many)  # one `= ANY($1)` query per tick
        self._unknown: dict[str, float] = {}
        self.redis_up = True
        self.database_up = True
        self._gauges_set = False

    async def status(self, certificate_id: str) -> Status:
        mirrored = self._cache.known(certificate_id)
        if mirrored is not None:  # read from Redis before, and Redis has not said it changed since
            return Status(mirrored.status, CACHE)
        try:
            cached = await self._cached.get(certificate_id)
            self._mark("redis", True)
            if cached is not None:
                return Status(cached.status, CACHE)
        except (RedisError, OSError):
            self._mark("redis", False)
        if self._unknown.get(certificate_id, 0) > time.monotonic():
            return Status(None, DATABASE)
        try:
            row = await asyncio.wait_for(asyncio.shield(self._read.get(certificate_id)), self._db_timeout)
        except _DATABASE_DOWN:
            self._mark("postgres", False)
            return Status(None, UNCHECKED)
        self._mark("postgres", True)
        if row is None:
            if len(self._unknown) > _NEGATIVE_LIMIT:
                self._unknown.clear()
            self._unknown[certificate_id] = time.monotonic() + self._negative_ttl
            return Status(None, DATABASE)
        return Status(row.status, DATABASE)

    async def _cache_many(self, certificate_ids: list[str]) -> dict[str, CachedStatus | None]:
        return dict(zip(certificate_ids, await self._cache.get_many(certificate_ids)))

    async def _read_many(self, certificate_ids: list[str]) -> dict[str, StoredStatus]:
        pool = await self._ensure_pool()
        if self._primary is None:
            read = await repository.certificate_statuses(pool, certificate_ids)
        else:
            read = await self._current_read(pool, self._primary, certificate_ids)
        rows = {r.certificate_id: r for r in read.statuses}
        if rows and self.redis_up:
            try:
                # Refill the cache, fenced: the version check keeps a newer status the relay wrote meanwhile,
                # and the floor refuses a read older than any status the relay wrote, even one whose key
                # is gone (services.registry.certificate_status).
                await self._cache.refill_many(
                    [
                        StatusEntry(r.certificate_id, r.status, r.status_version, int(r.expires_at.timestamp()))
                        for r in rows.values()
                    ],
                    read_at_feed_head=read.feed_head,
                )
            except (RedisError, OSError):
                self._mark("redis", False)
        return rows

    async def _current_read(
        self, replica: asyncpg.Pool, primary: asyncpg.Pool, certificate_ids: list[str]
    ) -> repository.StatusRead:
        """Statuses at least as current as the primary when the scan arrived: from the replica once its
        snapshot has reached the primary's feed head, else from the primary. Sound because the relay leader,
        the feed's only writer, commits positions in order, each revocation with its event: a snapshot
        holding position N holds every revocation up to N."""
        wanted = await repository.feed_head(primary)
        deadline = time.monotonic() + self._catch_up
        while True:
            read = await repository.certificate_statuses(replica, certificate_ids)
            if read.feed_head >= wanted:
                return read
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_CATCH_UP_POLL_S)
        REPLICA_BEHIND.inc()
        return await repository.certificate_statuses(primary, certificate_ids)

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await create_pool(self._dsn, min_size=1, max_size=4, timeout=self._db_timeout)
        return self._pool

    def _mark(self, dependency: str, up: bool) -> None:
        previous = self.redis_up if dependency == "redis" else self.database_up
        if dependency == "redis":
            self.redis_up = up
        else:
            self.database_up = up
        if previous != up or not self._gauges_set:
            DEPENDENCY_UP.labels("verify_svc", "redis").set(1 if self.redis_up else 0)
            DEPENDENCY_UP.labels("verify_svc", "postgres").set(1 if self.database_up else 0)
            self._gauges_set = True

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
