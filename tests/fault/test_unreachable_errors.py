"""Which errors answer UNAVAILABLE: those that mean Postgres or Redis cannot be reached now, on every RPC;
never those that mean bad input or a bug (a client would retry a bad request for ever)."""

import asyncio

import asyncpg
import pytest
import redis.exceptions

from services.common.db import create_pool, in_tx
from services.common.guard import dependency_unreachable


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.exceptions.InterfaceError("pool is closing"),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    ],
    ids=lambda e: f"{type(e).__name__}:{e}",
)
def test_outage_errors_are_unavailable(exc):
    assert dependency_unreachable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.DataError("invalid input for query argument $1: 'x'"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.InterfaceError("cannot call Connection.fetch(): connection has been released"),
        asyncpg.exceptions.InternalClientError("no binary format encoder for type"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.exceptions.SyntaxOrAccessError("syntax error"),
        redis.exceptions.AuthenticationError("invalid password"),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ValueError("a bug"),
    ],
    ids=lambda e: f"{type(e).__name__}:{e}",
)
def test_bad_input_and_bugs_are_not_unavailable(exc):
    assert not dependency_unreachable(exc)


async def test_in_tx_bad_input_and_misuse_are_not_unavailable(private_postgres):
    # Bad input and a bug must surface as themselves (INTERNAL at the guard, or the caller's own check),
    # never as UNAVAILABLE, which invites the client to retry the same call for ever.
    pool = await create_pool(private_postgres.url(), min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.exceptions.DataError):
            await in_tx(pool, lambda conn: conn.fetchval("SELECT $1::int", "not a number"))

        async def two_at_once(conn):
            # A bug: two statements at once on one connection. asyncpg raises a plain InterfaceError for it,
            # the class it also raises for "connection is closed".
            await asyncio.gather(conn.fetchval("SELECT pg_sleep(0.2)"), conn.fetchval("SELECT 1"))

        with pytest.raises(asyncpg.exceptions.InterfaceError, match="another operation is in progress"):
            await in_tx(pool, two_at_once)
        assert await in_tx(pool, lambda conn: conn.fetchval("SELECT 1")) == 1  # the pool serves on
    finally:
        await pool.close()
