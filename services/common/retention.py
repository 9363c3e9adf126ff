"""The retention job: what a service keeps no longer than its policy says (docs/retention.md).

Each service that owns personal data runs one `RetentionJob` in the background with its own steps:
result_svc erases persons and deletes its audit rows (services.result_svc.retention), publish_svc erases
certificates' QR texts, redacts feed payloads and deletes its read-audit rows
(services.publish_svc.retention). A step is one kind of data with its retention period; its `batch`
changes at most `limit` rows whose time is before the cutoff, in one short transaction, and says how many
it changed (and, for a step that walks its rows in key order, where it stopped). A pass runs every step's
batches until there is nothing more, then sleeps.

Safe to run in every replica and process at once: a batch locks the rows it changes `SKIP LOCKED`, so two
jobs (or a job and a service) never wait for each other and never change a row twice; a batch also gives up
on a table lock after LOCK_TIMEOUT (a migration) and the step continues at the next pass. The job never
reads personal data into a log line: counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
from prometheus_client import Counter, Gauge

from services.common.config import PersonalDataConfig
from services.common.db import BACKGROUND_ERRORS

log = logging.getLogger("covidtest.retention")

LOCK_TIMEOUT = "2s"

ROWS = Counter(
    "covidtest_retention_rows_total",
    "Rows the retention job erased, redacted or deleted",
    ["kind", "action"],
)
LAST_PASS = Gauge(
    "covidtest_retention_last_pass_timestamp_seconds",
    "When this process last completed a retention pass over every step (0: not yet)",
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of data is kept (the RETENTION_* settings)."""

    personal_data: timedelta
    feed_payload: timedelta
    audit: timedelta
    batch_size: int

    @classmethod
    def from_config(cls, config: PersonalDataConfig) -> RetentionPolicy:
        return cls(
            personal_data=timedelta(days=config.retention_personal_data_days),
            feed_payload=timedelta(days=config.retention_feed_payload_days),
            audit=timedelta(days=config.retention_audit_days),
            batch_size=config.retention_batch_size,
        )


@dataclass(frozen=True, slots=True)
class BatchDone:
    """What one batch did, and where the next one continues."""

    changed: int
    # A step that walks its rows in key order (persons: some old rows are not due and stay) says where it
    # stopped; the step ends when a batch found no row at all. None: a step whose batch only ever finds due
    # rows (the changed ones leave the query); it ends when a batch changed nothing.
    resume_after: object | None = None


# One transaction's work: (connection inside a transaction, cutoff, limit, where the last batch stopped).
Batch = Callable[[asyncpg.Connection, datetime, int, object | None], Awaitable[BatchDone]]


@dataclass(frozen=True, slots=True)
class RetentionStep:
    """One kind of data and what happens to it once older than its period."""

    kind: str  # metric label and log field: "persons", "certificate_qr", "feed_payloads", "audit_log", ...
    action: str  # "erased", "redacted" or "deleted"
    keep: Callable[[RetentionPolicy], timedelta]
    batch: Batch


async def run_step(
    pool: asyncpg.Pool, step: RetentionStep, policy: RetentionPolicy, now: datetime | None = None
) -> int:
    """Every due row of one step, batch after batch, until a batch finds none; returns the rows changed.
    A batch that meets a table lock ends the step for this pass (the next pass continues)."""
    cutoff = (now or datetime.now(UTC)) - step.keep(policy)
    total = 0
    after: object | None = None
    while True:
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    # A pool's connection proxy behaves as the connection it wraps.
                    done = await step.batch(cast(asyncpg.Connection, conn), cutoff, policy.batch_size, after)
            except asyncpg.LockNotAvailableError:
                log.warning(
                    "retention step met a table lock; continuing next pass", extra={"fields": {"kind": step.kind}}
                )
                return total
        if done.changed:
            total += done.changed
            ROWS.labels(step.kind, step.action).inc(done.changed)
        if done.resume_after is None and not done.changed:
            return total
        after = done.resume_after


async def run_pass(
    pool: asyncpg.Pool, steps: Sequence[RetentionStep], policy: RetentionPolicy, now: datetime | None = None
) -> dict[str, int]:
    """One pass over every step; returns rows changed per kind."""
    done = {step.kind: await run_step(pool, step, policy, now) for step in steps}
    LAST_PASS.set(time.time())
    return done


class RetentionJob:
    """Runs a pass at start and then every `interval_s`, for the life of the server."""

    def __init__(self, pool: asyncpg.Pool, steps: Sequence[RetentionStep], policy: RetentionPolicy, interval_s: float):
        self._pool = pool
        self._steps = steps
        self._policy = policy
        self._interval = interval_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                done = await run_pass(self._pool, self._steps, self._policy)
                log.info(
                    "retention pass done",
                    extra={"fields": {**done, "seconds": round(time.monotonic() - started, 3)}},
                )
            except BACKGROUND_ERRORS as exc:
                log.warning("retention pass failed; retrying later", extra={"fields": {"error": type(exc).__name__}})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
