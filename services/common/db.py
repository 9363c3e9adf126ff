"""Postgres access: one asyncpg pool per process and a transaction helper.

Postgres is the system of record. `in_tx(pool, fn)` runs `fn(conn)` in one transaction and returns only
after COMMIT, so an RPC that awaits it answers only once its writes are durable. Connection failures
become `Unavailable` (gRPC UNAVAILABLE: the client may retry with the same request id); constraint
violations the caller did not anticipate stay exceptions and end as INTERNAL. Once COMMIT has succeeded
the call's writes are durable, so a failure while the connection goes back to the pool no longer
concerns the caller: `in_tx` returns the result and only logs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar, cast

import asyncpg

from services.common.errors import Unavailable

log = logging.getLogger("covidtest.db")

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

# InterfaceError subclasses that mean a bad argument or a client/server mismatch, i.e. bad input or a
# bug: retrying cannot help, so they must never be answered UNAVAILABLE. (The client-side DataError lives
# in `_base` only: `asyncpg.exceptions.DataError` is the SQLSTATE class 22 PostgresError, which is no
# connection error anyway.)
_NOT_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions._base.DataError,
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means "Postgres is not reachable right now" (UNAVAILABLE), not bad input or a bug.

    `CONNECTION_ERRORS` is a tuple for `except` clauses of background loops, where catching too much only
    costs a retry. An answer to a client must be exact: a plain InterfaceError counts only when it says the
    connection or the pool is closed ("connection is closed", "cannot perform operation: connection is
    closed", "pool is closing"); asyncpg raises the same class for misuse such as "another operation is in
    progress" or "connection has been released back to the pool", which are bugs.
    """
    if not isinstance(exc, CONNECTION_ERRORS) or isinstance(exc, _NOT_CONNECTION_ERRORS):
        return False
    if type(exc) is asyncpg.exceptions.InterfaceError:
        message = str(exc)
        return "closed" in message or "closing" in message
    return True


# What a background loop (idempotency pruning, verdict-count flushes, the trust-list refresh) survives
# and retries at its next period: the connection errors above, and any error Postgres itself raises, such
# as a statement timeout or a read-only standby during a failover. Such a loop must never end for good.
BACKGROUND_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection configured like the pool's (for the CLI and tools)."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, **kw) -> asyncpg.Pool:
    """A pool whose connections decode jsonb to Python objects. Raises Unavailable if unreachable."""
    try:
        return await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=init_connection, command_timeout=30, **kw
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable("the database is not reachable") from exc


async def in_tx(
    pool: asyncpg.Pool, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, isolation: Isolation = "read_committed"
) -> T:
    """Run `fn(conn)` in one transaction; returns after commit. Connection loss before or during COMMIT →
    Unavailable; any failure after a successful COMMIT (returning the connection to the pool) → the result."""
    committed = False
    result: T
    try:
        async with pool.acquire() as conn:
            async with conn.transaction(isolation=isolation):
                # A pool's connection proxy behaves as the connection it wraps.
                result = await fn(cast(asyncpg.Connection, conn))
            committed = True
    except Exception as exc:
        if committed:
            # The writes are durable: telling the client it failed would make it report a stored result as
            # lost. A connection broken on its way back (Postgres stopping: InterfaceError "connection is
            # closed", InternalClientError from the pool's holder) is the pool's problem, not the call's.
            log.warning(
                "connection failed after COMMIT; the call's writes are stored",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return result
        if unreachable(exc):
            # Lost before or during COMMIT: the transaction may or may not have committed, and a retry with
            # the same request id gets the stored answer if it did.
            raise Unavailable("the database is not reachable; retry with the same request_id") from exc
        raise
    return result


async def fetch(pool: asyncpg.Pool, query: str, *args) -> list[asyncpg.Record]:
    """A single read outside an explicit transaction. Connection loss → Unavailable."""
    try:
        return await pool.fetch(query, *args)
    except CONNECTION_ERRORS as exc:
        if not unreachable(exc):
            raise
        raise Unavailable("the database is not reachable") from exc


async def fetchrow(pool: asyncpg.Pool, query: str, *args) -> asyncpg.Record | None:
    try:
        return await pool.fetchrow(query, *args)
    except CONNECTION_ERRORS as exc:
        if not unreachable(exc):
            raise
        raise Unavailable("the database is not reachable") from exc
