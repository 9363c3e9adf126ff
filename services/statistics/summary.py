"""The daily summary behind the statistics, and the refresher that keeps it current.

Why a summary table. The health department's figures are counts over months of results (10 million
and more); counting them from `results` per call would read every row of the range each time. Instead
`statistics_daily` (migrations/0016_statistics.sql) holds one row per (province, day, district, lab)
with the tests, positives, pools tested and positive, and the exact p50 and p90 turnaround of that
cell. A year of one province is some tens of thousands of rows, read through the primary key
(province, day, district, lab) in key order, a page at a time: each call reads at most one page of
the index, whatever the number of results behind it.

Exact percentiles, not histograms: the API offers one grain (day × district × lab, the grain the
health department asked for), so no percentile ever has to be merged across rows, and each row's
p50/p90 is computed exactly (`percentile_disc`, an observed value) when its day is recomputed.

What counts where (the contract documents it too): a sample counts on the day it was collected (Vietnam
time, UTC+7, no daylight saving), in the province and district its person's row holds when the day is
recomputed (a person's latest registration), under the lab that recorded the result. Tests are current
RELEASED results, NEGATIVE or POSITIVE (a pool's negative counts once per member; a positive pool's
members, RETEST_REQUIRED, are counted as a positive pool and wait for their retests); amended results
count by their current version, withdrawn ones not at all. Turnaround runs from collection to the
recording of the sample's first result version.

How it stays current: recompute whole days, never add deltas. A result's day is its sample's
collection day, so every change — a result recorded, amended (a new version) or withdrawn — touches
exactly the days of its samples. `Refresher` (a background task of result_svc, every
REFRESH_SECONDS) finds the days of the results recorded or withdrawn since its last run (indexes on
`results.recorded_at` and `results.withdrawn_at`), deletes those days' rows and recomputes them from
the record (an index on `samples.collected_at`: one day is a few tens of thousands of samples at most),
in one transaction with its progress mark. Recomputing is idempotent, so it looks back OVERLAP before
its last mark: a result whose transaction started before the mark but committed after it (its
`recorded_at` is its transaction's start) is still found. Intake transactions last seconds, far less
than the overlap. With no mark (a new database, or after `statistics rebuild`), the refresh builds
every day in one statement (about a minute at 10 million results; docs/benchmarks.md). Replicas may
each run a refresher: the progress row is locked with SKIP LOCKED, so one refreshes while the others
skip that round.

The lab backlog and the verdict counts are not summarised: the backlog reads only waiting samples (a
partial index on samples in state REGISTERED), and `verification_counts` is already hourly counts,
read per device through an index on (checkpoint_id, hour, verdict).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import date, timedelta
from typing import cast

import asyncpg

from services.common.db import BACKGROUND_ERRORS
from services.statistics import repository

log = logging.getLogger("covidtest.statistics")

REFRESH_SECONDS = 30.0
OVERLAP = timedelta(minutes=10)


async def refresh(conn: asyncpg.Connection) -> int | None:
    """One refresh inside the caller's transaction: the number of days recomputed (-1: all of them,
    built from scratch), or None when another process holds the progress row (it is refreshing)."""
    progress = await repository.lock_progress(conn)
    if progress is None:
        return None
    covered_until, now = progress
    if covered_until is None:
        await repository.rebuild_all(conn)
        await repository.set_progress(conn, now)
        return -1
    days: list[date] = await repository.touched_days(conn, covered_until - OVERLAP)
    for day in days:
        await repository.recompute_day(conn, day)
    await repository.set_progress(conn, now)
    return len(days)


async def refresh_pool(pool: asyncpg.Pool) -> int | None:
    async with pool.acquire() as conn, conn.transaction():
        return await refresh(cast(asyncpg.Connection, conn))


class Refresher:
    """Refreshes the summary every `every_s` seconds for the life of the server; database errors are
    retried next round."""

    def __init__(self, pool: asyncpg.Pool, every_s: float = REFRESH_SECONDS):
        self._pool = pool
        self.every_s = every_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                days = await refresh_pool(self._pool)
                if days:
                    log.info("statistics refreshed", extra={"fields": {"days": days}})
            except BACKGROUND_ERRORS as exc:
                log.warning("statistics not refreshed; retrying later", extra={"fields": {"error": type(exc).__name__}})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_s)

    def stop(self) -> None:
        self._stopping.set()
