"""Idempotent mutations (AIP-155): the same request id and body give the same answer, once.

`run_idempotent` runs a mutation in one transaction together with its idempotency row. A transaction
advisory lock on (principal, method, request id) makes two concurrent calls with one request id run
one after the other: the second finds the first's row and returns its stored response, so exactly one
set of rows is written. The same id with a different body is refused with ALREADY_EXISTS.

Rows are kept for a retention period (result_svc's IDEMPOTENCY_RETENTION_HOURS, one table for all
services) and then pruned: a request id older than that is no longer recognised, so the retention
must exceed the longest time a client keeps retrying one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol, TypeVar

import asyncpg
from google.protobuf.message import Message

from services.common.db import BACKGROUND_ERRORS, in_tx
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument

R = TypeVar("R", bound=Message)

MAX_REQUEST_ID = 64
PRUNE_BATCH = 5_000
log = logging.getLogger("covidtest.idempotency")


class IdempotentRequest(Protocol):
    """A mutation's request message: every one carries the client's request id (AIP-155)."""

    @property
    def request_id(self) -> str: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def check_request_id(request_id: str) -> None:
    if not request_id or len(request_id) > MAX_REQUEST_ID or not request_id.isprintable():
        raise InvalidArgument(
            "request_id is required: a client-chosen unique id (e.g. a UUID), 1-64 printable characters",
            [FieldViolation("request_id", "required, 1-64 printable characters")],
        )


async def run_idempotent(
    pool: asyncpg.Pool,
    principal_id: str,
    method: str,
    request: IdempotentRequest,
    response_type: type[R],
    mutate: Callable[[asyncpg.Connection], Awaitable[R]],
    *,
    stored: Callable[[R], R] | None = None,
) -> R:
    """Run `mutate(conn)` once per (principal, method, request.request_id).

    `stored` maps the response to what is kept for replays (e.g. with a one-time secret removed).
    """
    request_id = request.request_id
    check_request_id(request_id)
    body_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
    lock = int.from_bytes(
        hashlib.sha256(f"{principal_id}|{method}|{request_id}".encode()).digest()[:8], "big", signed=True
    )

    async def tx(conn: asyncpg.Connection) -> R:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        row = await conn.fetchrow(
            "SELECT request_hash, response FROM idempotency_keys"
            " WHERE principal_id = $1 AND method = $2 AND request_id = $3",
            principal_id,
            method,
            request_id,
        )
        if row is not None:
            if bytes(row["request_hash"]) != body_hash:
                raise AlreadyExists(
                    "this request_id was already used with a different request body",
                    reason="REQUEST_ID_REUSED",
                    metadata={"request_id": request_id},
                )
            return response_type.FromString(bytes(row["response"]))
        response = await mutate(conn)
        keep = stored(response) if stored else response
        await conn.execute(
            """INSERT INTO idempotency_keys (principal_id, method, request_id, request_hash, response)
               VALUES ($1, $2, $3, $4, $5)""",
            principal_id,
            method,
            request_id,
            body_hash,
            keep.SerializeToString(),
        )
        return response

    return await in_tx(pool, tx)


async def prune(pool: asyncpg.Pool, retention: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Delete the rows older than `retention`, `batch` rows per statement so that no statement holds
    many row locks for long; returns how many were deleted."""
    total = 0
    while True:
        deleted = await pool.fetchval(
            """WITH old AS (
                   SELECT principal_id, method, request_id FROM idempotency_keys
                   WHERE created_at < now() - $1::interval ORDER BY created_at LIMIT $2),
               gone AS (
                   DELETE FROM idempotency_keys k USING old
                   WHERE (k.principal_id, k.method, k.request_id) = (old.principal_id, old.method, old.request_id)
                   RETURNING 1)
               SELECT count(*) FROM gone""",
            retention,
            batch,
        )
        total += deleted
        if deleted < batch:
            return total


class Pruner:
    """Prunes expired idempotency rows now and then, for the life of a server (result_svc). Replicas
    may each run one: deleting rows another replica already deleted costs nothing."""

    def __init__(self, pool: asyncpg.Pool, retention: timedelta):
        self._pool = pool
        self._retention = retention
        # Often enough that the table stays near its retention; for a short test retention, often.
        self.every_s = min(3600.0, retention.total_seconds() / 4)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                removed = await prune(self._pool, self._retention)
                if removed:
                    log.info("idempotency keys pruned", extra={"fields": {"count": removed}})
            except BACKGROUND_ERRORS as exc:
                log.warning(
                    "idempotency keys not pruned; retrying later", extra={"fields": {"error": type(exc).__name__}}
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_s)

    def stop(self) -> None:
        self._stopping.set()
