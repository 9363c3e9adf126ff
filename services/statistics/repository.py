"""The statistics' SQL: maintaining the daily summary and reading it, the lab backlog and verdict counts.

Every read is scoped by province in SQL and pages in key order through an index (summary.py says why).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import NamedTuple

import asyncpg

ZONE = "Asia/Ho_Chi_Minh"

# One row per (province, day, district, lab) from the record: current result versions of the samples in
# `where` (a condition on s.collected_at), with what summary.py documents as counted.
_SUMMARY_SELECT = f"""
SELECT p.province_code, (s.collected_at AT TIME ZONE '{ZONE}')::date AS day, p.district_code, r.lab_org_id,
       count(*) FILTER (WHERE r.state = 'RELEASED' AND r.outcome IN ('NEGATIVE', 'POSITIVE')) AS tests,
       count(*) FILTER (WHERE r.state = 'RELEASED' AND r.outcome = 'POSITIVE') AS positives,
       count(DISTINCT r.pool_id) FILTER (
           WHERE r.pool_id IS NOT NULL AND r.state IN ('RELEASED', 'RETEST_REQUIRED')
             AND r.outcome IN ('NEGATIVE', 'POSITIVE')) AS pools_tested,
       count(DISTINCT r.pool_id) FILTER (
           WHERE r.pool_id IS NOT NULL AND r.state = 'RETEST_REQUIRED' AND r.outcome = 'POSITIVE') AS pools_positive,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.recorded_at - s.collected_at)::bigint)
           FILTER (WHERE r.state = 'RELEASED' AND r.outcome IN ('NEGATIVE', 'POSITIVE')) AS p50,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM f.recorded_at - s.collected_at)::bigint)
           FILTER (WHERE r.state = 'RELEASED' AND r.outcome IN ('NEGATIVE', 'POSITIVE')) AS p90
FROM samples s
JOIN results r ON r.sample_id = s.id AND r.state IN ('RELEASED', 'RETEST_REQUIRED')
JOIN results f ON f.sample_id = s.id AND f.version = 1
JOIN persons p ON p.id = s.person_id
WHERE {{where}}
GROUP BY 1, 2, 3, 4
"""
_INSERT = """INSERT INTO statistics_daily (province_code, day, district_code, lab_org_id, tests, positives,
                                      pools_tested, pools_positive, turnaround_p50_seconds, turnaround_p90_seconds)
"""


async def lock_progress(conn: asyncpg.Connection) -> tuple[datetime | None, datetime] | None:
    """(covered_until, now) with the progress row locked, or None if another refresher holds it."""
    row = await conn.fetchrow("SELECT covered_until, now() AS now FROM statistics_progress FOR UPDATE SKIP LOCKED")
    return None if row is None else (row["covered_until"], row["now"])


async def set_progress(conn: asyncpg.Connection, covered_until: datetime) -> None:
    await conn.execute(
        "UPDATE statistics_progress SET covered_until = $1, refreshed_at = clock_timestamp()", covered_until
    )


async def reset_progress(conn: asyncpg.Connection) -> None:
    """The next refresh rebuilds every day."""
    await conn.execute("UPDATE statistics_progress SET covered_until = NULL")


async def rebuild_all(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM statistics_daily")
    await conn.execute(_INSERT + _SUMMARY_SELECT.format(where="true"))


async def touched_days(conn: asyncpg.Connection, since: datetime) -> list[date]:
    """Collection days of the samples whose results were recorded or withdrawn at or after `since`."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT (s.collected_at AT TIME ZONE '{ZONE}')::date AS day
            FROM results r JOIN samples s ON s.id = r.sample_id
            WHERE r.recorded_at >= $1 OR r.withdrawn_at >= $1
            ORDER BY day""",
        since,
    )
    return [r["day"] for r in rows]


async def recompute_day(conn: asyncpg.Connection, day: date) -> None:
    await conn.execute("DELETE FROM statistics_daily WHERE day = $1", day)
    # The day's bounds as instants, so the index on samples.collected_at serves the range.
    await conn.execute(
        _INSERT
        + _SUMMARY_SELECT.format(
            where=f"s.collected_at >= ($1::date::timestamp AT TIME ZONE '{ZONE}') "
            f"AND s.collected_at < (($1::date + 1)::timestamp AT TIME ZONE '{ZONE}')"
        ),
        day,
    )


async def covered_until(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval("SELECT covered_until FROM statistics_progress")


class DailyRow(NamedTuple):
    day: date
    district_code: str
    lab_org_id: uuid.UUID
    tests: int
    positives: int
    pools_tested: int
    pools_positive: int
    p50: int | None
    p90: int | None


class DayKey(NamedTuple):
    day: date
    district_code: str
    lab_org_id: uuid.UUID


async def daily(
    conn: asyncpg.Connection, province: str, first: date, last: date, after: DayKey | None, limit: int | None
) -> list[DailyRow]:
    """Summary rows of `province` from `first` to `last`, in key order, after the page key `after`."""
    # Two statement texts rather than `$k IS NULL OR …`, so a cached generic plan still seeks the key.
    page = "AND (day, district_code, lab_org_id) > ($5::date, $6::text, $7::uuid)" if after else ""
    rows = await conn.fetch(
        f"""SELECT day, district_code, lab_org_id, tests, positives, pools_tested, pools_positive,
                   turnaround_p50_seconds AS p50, turnaround_p90_seconds AS p90
            FROM statistics_daily
            WHERE province_code = $1 AND day >= $2 AND day <= $3 {page}
            ORDER BY day, district_code, lab_org_id
            LIMIT $4""",
        province,
        first,
        last,
        limit,
        *(after or ()),
    )
    return [DailyRow(*r) for r in rows]


class BacklogRow(NamedTuple):
    lab_org_id: uuid.UUID
    under_24h: int
    from_24_to_48h: int
    over_48h: int


async def backlog(conn: asyncpg.Connection, province: str) -> tuple[datetime, list[BacklogRow]]:
    """(now, per lab of the province: its waiting samples by age since collection)."""
    now = await conn.fetchval("SELECT now()")
    rows = await conn.fetch(
        """SELECT s.lab_org_id,
                  count(*) FILTER (WHERE s.collected_at > $2::timestamptz - interval '24 hours'),
                  count(*) FILTER (WHERE s.collected_at <= $2::timestamptz - interval '24 hours'
                                     AND s.collected_at > $2::timestamptz - interval '48 hours'),
                  count(*) FILTER (WHERE s.collected_at <= $2::timestamptz - interval '48 hours')
           FROM organisations o
           JOIN samples s ON s.lab_org_id = o.id AND s.state = 'REGISTERED'
           WHERE o.province_code = $1 AND o.kind = 'LAB'
           GROUP BY s.lab_org_id
           ORDER BY s.lab_org_id""",
        province,
        now,
    )
    return now, [BacklogRow(*r) for r in rows]


class VerdictRow(NamedTuple):
    checkpoint_id: uuid.UUID
    hour: datetime
    verdict: str
    scans: int


class VerdictKey(NamedTuple):
    checkpoint_id: uuid.UUID
    hour: datetime
    verdict: str


async def verdicts(
    conn: asyncpg.Connection,
    province: str,
    start: datetime,
    end: datetime,
    after: VerdictKey | None,
    limit: int | None,
) -> list[VerdictRow]:
    """Verdict counts of the province's devices for the hours in [start, end), by device, hour and verdict."""
    # The province's devices first (a few hundred at most), then their counts through the index on
    # (checkpoint_id, hour, verdict), in its order.
    devices = await conn.fetch("SELECT id FROM checkpoint_devices WHERE province_code = $1 ORDER BY id", province)
    page = "AND (v.checkpoint_id, v.hour, v.verdict) > ($5::uuid, $6::timestamptz, $7::text)" if after else ""
    rows = await conn.fetch(
        f"""SELECT v.checkpoint_id, v.hour, v.verdict, v.count
            FROM verification_counts v
            WHERE v.checkpoint_id = ANY($1::uuid[]) AND v.hour >= $2 AND v.hour < $3 AND v.count > 0 {page}
            ORDER BY v.checkpoint_id, v.hour, v.verdict
            LIMIT $4""",
        [d["id"] for d in devices],
        start,
        end,
        limit,
        *(after or ()),
    )
    return [VerdictRow(*r) for r in rows]
