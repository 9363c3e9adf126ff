"""A small generated record for the statistics tests: persons, samples, pools, results and verdict counts
written straight into the database (as the schema owner), with collection and result times chosen."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common.auth import PrincipalKind, Role
from services.registry import principals

# 10:00 in Vietnam on each day: the local day is the date written.
D1 = datetime(2021, 10, 5, 3, 0, tzinfo=UTC)
D2 = datetime(2021, 10, 6, 3, 0, tzinfo=UTC)


@dataclass
class Orgs:
    unit: uuid.UUID
    lab_a: uuid.UUID  # province 24
    lab_b: uuid.UUID  # province 24
    lab_c: uuid.UUID  # province 26


async def organisation(conn: asyncpg.Connection, kind: str, province: str) -> uuid.UUID:
    return uuid.UUID(await principals.create_organisation(conn, None, f"{kind}-{uuid.uuid4().hex[:8]}", kind, province))


async def health_authority(conn: asyncpg.Connection, province: str) -> str:
    """A HEALTH_DEPARTMENT organisation of `province` and a HEALTH_AUTHORITY token for it."""
    org = await organisation(conn, "HEALTH_DEPARTMENT", province)
    _cid, token = await principals.issue_token(conn, None, PrincipalKind.ORGANISATION, str(org), Role.HEALTH_AUTHORITY)
    return token


async def _person(conn: asyncpg.Connection, province: str, district: str) -> uuid.UUID:
    pid = uuid.uuid4()
    await conn.execute(
        """INSERT INTO persons (id, person_key_hash, phone_hash, dob_hash, full_name_enc, date_of_birth_enc,
                                province_code, district_code)
           VALUES ($1, $2, $2, $2, $2, $2, $3, $4)""",
        pid,
        os.urandom(32),
        province,
        district,
    )
    return pid


async def _sample(
    conn: asyncpg.Connection, orgs: Orgs, lab: uuid.UUID, province: str, district: str, collected: datetime, state: str
) -> uuid.UUID:
    sid = uuid.uuid4()
    await conn.execute(
        """INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at, sampling_site,
                                registration_hash, lookup_dob_hash, lookup_phone_hash, state)
           VALUES ($1, $2, $3, $4, $5, 'NAAT', $6, 'site', $7, $7, $7, $8)""",
        sid,
        orgs.unit,
        sid.hex,
        await _person(conn, province, district),
        lab,
        collected,
        os.urandom(32),
        state,
    )
    return sid


async def _result(
    conn: asyncpg.Connection,
    sample: uuid.UUID,
    lab: uuid.UUID,
    outcome: str,
    state: str,
    recorded: datetime,
    *,
    version: int = 1,
    pool: uuid.UUID | None = None,
    withdrawn: datetime | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO results (id, sample_id, version, outcome, state, lab_org_id, pool_id, tested_at, recorded_at,
                                withdrawn_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)""",
        uuid.uuid4(),
        sample,
        version,
        outcome,
        state,
        lab,
        pool,
        recorded,
        withdrawn,
    )


async def tested(
    conn: asyncpg.Connection,
    orgs: Orgs,
    lab: uuid.UUID,
    province: str,
    district: str,
    day: datetime,
    outcomes: list[str],
    hours: list[float] | None = None,
) -> None:
    """Individual samples collected on `day`, each with a released result `hours[i]` hours later."""
    for i, outcome in enumerate(outcomes):
        sid = await _sample(conn, orgs, lab, province, district, day, "RESULTED")
        after = timedelta(hours=hours[i] if hours else 6)
        await _result(conn, sid, lab, outcome, "RELEASED", day + after)


async def pools(
    conn: asyncpg.Connection,
    orgs: Orgs,
    lab: uuid.UUID,
    province: str,
    district: str,
    day: datetime,
    outcome: str,
    count: int,
    size: int = 2,
) -> None:
    """`count` pools of `size` members collected on `day`, resulted `outcome` 5 hours later."""
    for _ in range(count):
        pid = uuid.uuid4()
        state = "RESULTED" if outcome == "NEGATIVE" else "RETEST_REQUIRED"
        await conn.execute(
            """INSERT INTO pools (id, org_id, barcode, lab_org_id, test_type, state, outcome, resulted_at)
               VALUES ($1, $2, $3, $4, 'NAAT', $5, $6, $7)""",
            pid,
            orgs.unit,
            pid.hex,
            lab,
            state,
            outcome,
            day + timedelta(hours=5),
        )
        for _ in range(size):
            sid = await _sample(conn, orgs, lab, province, district, day, state)
            await conn.execute("UPDATE samples SET pool_id = $1 WHERE id = $2", pid, sid)
            result_state = "RELEASED" if outcome == "NEGATIVE" else "RETEST_REQUIRED"
            await _result(conn, sid, lab, outcome, result_state, day + timedelta(hours=5), pool=pid)


async def amended(conn: asyncpg.Connection, orgs: Orgs, lab: uuid.UUID, province: str, district: str, day: datetime):
    """A NEGATIVE released 2 h after collection, amended to POSITIVE 30 h after."""
    sid = await _sample(conn, orgs, lab, province, district, day, "RESULTED")
    await _result(conn, sid, lab, "NEGATIVE", "SUPERSEDED", day + timedelta(hours=2))
    await _result(conn, sid, lab, "POSITIVE", "RELEASED", day + timedelta(hours=30), version=2)


async def withdrawn(conn: asyncpg.Connection, orgs: Orgs, lab: uuid.UUID, province: str, district: str, day: datetime):
    sid = await _sample(conn, orgs, lab, province, district, day, "WITHDRAWN")
    await _result(conn, sid, lab, "POSITIVE", "WITHDRAWN", day + timedelta(hours=3), withdrawn=day + timedelta(hours=9))


async def waiting(
    conn: asyncpg.Connection, orgs: Orgs, lab: uuid.UUID, province: str, age: timedelta, count: int
) -> None:
    """`count` samples registered for `lab`, collected `age` ago, without a result."""
    now = await conn.fetchval("SELECT now()")
    for _ in range(count):
        await _sample(conn, orgs, lab, province, "213", now - age, "REGISTERED")


async def verdicts(conn: asyncpg.Connection, device: uuid.UUID, hour: datetime, counts: dict[str, int]) -> None:
    for verdict, n in counts.items():
        await conn.execute(
            "INSERT INTO verification_counts (hour, checkpoint_id, verdict, count) VALUES ($1, $2, $3, $4)",
            hour,
            device,
            verdict,
            n,
        )
