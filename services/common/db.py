"""Postgres access: one asyncpg pool per process and a transaction helper.

Postgres is the system of record. `in_tx(pool, fn)` runs `fn(conn)` in one transaction and returns only
after COMMIT, so an RPC that awaits it answers only once its writes are durable. Connection failures
become `Unavailable` (gRPC UNAVAILABLE: the client may retry with the same request id); constraint
violations the caller did not anticipate stay exceptions and end as INTERNAL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar, cast

import asyncpg

from services.common.errors import Unavailable

T = TypeVar("T")
Isolation = Literal["read_committed", "repeatable_read", "serializable"]

# Errors that mean "the database is not reachable right now", not "your request is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)

# What a background loop (idempotency pruning, verdict-count flushes, the trust-list refresh) survives
# and retries at its next period: the connection errors above, and any error Postgres itself raises, such
# as a statement timeout or a read-only standby during a failover. Such a loop must never end for good.
BACKGROUND_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection configured like the pool's (for the CLI and tools)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, **kw) -> asyncpg.Pool:
    """A pool whose connections decode jsonb to Python objects. Raises Unavailable if unreachable."""
    try:
        return await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30, **kw
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable("the database is not reachable") from exc


async def in_tx(
    pool: asyncpg.Pool, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, isolation: Isolation = "read_committed"
) -> T:
    """Run `fn(conn)` in one transaction; returns after commit. Connection loss → Unavailable."""
    try:
        async with pool.acquire() as conn:
            async with conn.transaction(isolation=isolation):
                # A pool's connection proxy behaves as the connection it wraps.
                return await fn(cast(asyncpg.Connection, conn))
    except CONNECTION_ERRORS as exc:
        raise Unavailable("the database is not reachable; nothing from this call was stored") from exc


async def fetch(pool: asyncpg.Pool, query: str, *args) -> list[asyncpg.Record]:
    """A single read outside an explicit transaction. Connection loss → Unavailable."""
    try:
        return await pool.fetch(query, *args)
    except CONNECTION_ERRORS as exc:
        raise Unavailable("the database is not reachable") from exc


async def fetchrow(pool: asyncpg.Pool, query: str, *args) -> asyncpg.Record | None:
    try:
        return await pool.fetchrow(query, *args)
    except CONNECTION_ERRORS as exc:
        raise Unavailable("the database is not reachable") from exc
