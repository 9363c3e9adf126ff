"""SQL of result_svc: samples, pools, persons, results and the outbox.

Plain parameterised statements over an asyncpg connection that the caller holds inside a
transaction. Batch writes use `unnest` so a batch of hundreds of items costs a handful of round trips.
Rows are locked (`FOR UPDATE`) before any state change, always in this one order, so that concurrent
calls on the same pools and samples wait for each other but never deadlock:

1. the idempotency advisory lock of the call (services.common.idempotency; one per call);
2. pool-creation advisory locks `pool|org|barcode`, in sorted key order (`lock_pool_barcodes`);
3. pool rows, in one statement, in id order (`pools_of_org_by_barcode`, `lab_pools_by_barcode`);
4. sample rows, in one statement, in id order: the call's targets, the members of the pools locked
   in 3 and retest originals together (`lock_lab_samples`, `samples_of_org_by_barcode(lock=True)`);
   with the pools already locked no sample can join them meanwhile, so the members read are all;
5. person rows upserted, in person_key_hash order (`upsert_persons`);
6. new sample rows (their unique barcode), in (org_id, barcode) order (`insert_samples`);
7. then only rows of what 3-4 locked (results, pool and sample states) and new rows (outbox, audit).

A call never takes a lock of an earlier step after one of a later step, and never locks two sets of
one step in two statements.

Callers hand in named rows (`NewSample`, `NewResult`, `OutboxEvent`, ...) and typed criteria
(`SampleCriteria`, `ResultCriteria`); this module alone turns them into SQL and bound parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

import asyncpg

# --- rows written -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPool:
    """A pool tube registered with its first member sample."""

    id: uuid.UUID
    org_id: uuid.UUID
    barcode: str
    lab_org_id: uuid.UUID
    test_type: str


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A person's row: keyed hashes to find them again, sealed personal data, plain area codes."""

    id: uuid.UUID
    person_key_hash: bytes
    identity_hash: bytes | None
    phone_hash: bytes | None
    dob_hash: bytes
    identity_enc: bytes | None
    full_name_enc: bytes
    family_name_enc: bytes | None
    given_name_enc: bytes | None
    date_of_birth_enc: bytes
    phone_enc: bytes | None
    province_code: str
    district_code: str


@dataclass(frozen=True, slots=True)
class NewSample:
    """A sample to register (fields named and ordered as the columns of `samples` it writes)."""

    id: uuid.UUID
    org_id: uuid.UUID
    barcode: str
    person_id: uuid.UUID
    pool_id: uuid.UUID | None
    lab_org_id: uuid.UUID
    test_type: str
    rat_device_id: str | None
    collected_at: datetime
    sampling_site: str
    retest_of: uuid.UUID | None
    registration_hash: bytes
    # The citizen lookup factors this registration carried (keyed hashes, never the person's current
    # ones): a lookup finds a sample by its own registration's identity or phone and birth date.
    lookup_identity_hash: bytes | None
    lookup_phone_hash: bytes | None
    lookup_dob_hash: bytes


@dataclass(frozen=True, slots=True)
class NewResult:
    """A result version to insert (fields in the column order of `results`)."""

    id: uuid.UUID
    sample_id: uuid.UUID
    version: int
    outcome: str
    state: str
    lab_org_id: uuid.UUID
    pool_id: uuid.UUID | None
    tested_at: datetime
    method: str
    ct_value: float | None
    lab_reference: str
    amendment_reason: str = ""


class SampleStateChange(NamedTuple):
    sample_id: uuid.UUID
    state: str


@dataclass(frozen=True, slots=True)
class PoolResult:
    """The result recorded for a whole pool, and the pool's state after it."""

    pool_id: uuid.UUID
    state: str
    outcome: str
    tested_at: datetime
    method: str
    ct_value: float | None
    lab_reference: str


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A result change for the publish relay; the payload holds ids and codes only, never personal data."""

    kind: str
    result_id: uuid.UUID | None  # None for SAMPLE_REGISTERED: no result yet
    sample_id: uuid.UUID
    payload: dict[str, Any]


def _columns(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


def _column_values(rows: Sequence[object], columns: list[str]) -> list[list[Any]]:
    """One list per column, for `unnest($1::type[], ...)`."""
    return [[getattr(row, column) for row in rows] for column in columns]


# --- criteria of the queries --------------------------------------------------------------------------


class Viewer(Enum):
    """Which side of a sample the caller is on: the sampling unit that took it or the lab it was sent to."""

    SAMPLING_ORG = "sampling_org"
    LAB = "lab"


@dataclass(frozen=True, slots=True)
class SampleCriteria:
    """One sample the viewer may see: by id, or by barcode (of one sampling unit when given)."""

    viewer: Viewer
    viewer_org_id: uuid.UUID
    sample_id: uuid.UUID | None = None
    barcode: str | None = None
    sampling_org_id: uuid.UUID | None = None


class ResultKey(NamedTuple):
    """Where a ListResults page ends: results are listed in (recorded_at, id) order."""

    recorded_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ResultCriteria:
    """A page of result versions the viewer may see, filtered by recording time, outcome and state."""

    viewer: Viewer
    viewer_org_id: uuid.UUID
    recorded_from: datetime | None
    recorded_before: datetime | None
    outcomes: list[str]  # empty: any outcome
    states: list[str]
    after: ResultKey | None
    limit: int


# --- reads --------------------------------------------------------------------------------------------


async def lab_ids(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM organisations WHERE id = ANY($1::uuid[]) AND kind = 'LAB'", ids)
    return {r["id"] for r in rows}


async def samples_of_org_by_barcode(
    conn: asyncpg.Connection, org_id: uuid.UUID, barcodes: list[str], *, lock: bool = False
) -> list[asyncpg.Record]:
    """The organisation's samples with these barcodes, with their person's key hash."""
    return await conn.fetch(
        f"""SELECT s.id, s.barcode, s.state, s.registration_hash, s.person_id, p.person_key_hash
            FROM samples s JOIN persons p ON p.id = s.person_id
            WHERE s.org_id = $1 AND s.barcode = ANY($2::text[]) ORDER BY s.id {"FOR UPDATE OF s" if lock else ""}""",
        org_id,
        barcodes,
    )


async def pools_of_org_by_barcode(
    conn: asyncpg.Connection, org_id: uuid.UUID, barcodes: list[str]
) -> list[asyncpg.Record]:
    """The organisation's pools with these barcodes, locked, with their member counts."""
    return await conn.fetch(
        """SELECT p.id, p.barcode, p.lab_org_id, p.test_type, p.state,
                  (SELECT count(*) FROM samples s WHERE s.pool_id = p.id) AS members
           FROM pools p WHERE p.org_id = $1 AND p.barcode = ANY($2::text[]) ORDER BY p.id FOR UPDATE OF p""",
        org_id,
        barcodes,
    )


_SAMPLE_COLUMNS = """s.id, s.org_id, s.barcode, s.lab_org_id, s.pool_id, s.state, s.test_type, s.rat_device_id,
                     s.collected_at, s.sampling_site"""


async def lock_lab_samples(
    conn: asyncpg.Connection, lab_id: uuid.UUID, barcodes: list[str], pool_ids: Sequence[uuid.UUID] = ()
) -> list[asyncpg.Record]:
    """Samples sent to the lab with these barcodes and the members of these pools (locked by the caller
    before: step 3 of the lock order), all locked in one statement in id order for a result change."""
    return await conn.fetch(
        f"""SELECT {_SAMPLE_COLUMNS} FROM samples s
            WHERE (s.lab_org_id = $1 AND s.barcode = ANY($2::text[])) OR s.pool_id = ANY($3::uuid[])
            ORDER BY s.id FOR UPDATE""",
        lab_id,
        barcodes,
        list(pool_ids),
    )


async def sample_barcodes_at_other_labs(conn: asyncpg.Connection, lab_id: uuid.UUID, barcodes: list[str]) -> set[str]:
    """Which of these barcodes name samples sent to another lab (to tell 'not yours' from 'not found')."""
    rows = await conn.fetch(
        "SELECT DISTINCT barcode FROM samples WHERE barcode = ANY($1::text[]) AND lab_org_id <> $2", barcodes, lab_id
    )
    return {r["barcode"] for r in rows}


async def lab_pools_by_barcode(
    conn: asyncpg.Connection, lab_id: uuid.UUID, barcodes: list[str]
) -> list[asyncpg.Record]:
    """Pools sent to the lab with these barcodes, locked (before any of their samples)."""
    return await conn.fetch(
        """SELECT id, org_id, barcode, lab_org_id, test_type, state, outcome, tested_at, method, ct_value, lab_reference
           FROM pools WHERE lab_org_id = $1 AND barcode = ANY($2::text[]) ORDER BY id FOR UPDATE""",
        lab_id,
        barcodes,
    )


async def current_results(conn: asyncpg.Connection, sample_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM results WHERE sample_id = ANY($1::uuid[]) AND state <> 'SUPERSEDED'", sample_ids
    )
    return {r["sample_id"]: r for r in rows}


# --- writes -------------------------------------------------------------------------------------------


async def lock_pool_barcodes(conn: asyncpg.Connection, org_id: uuid.UUID, barcodes: list[str]) -> None:
    """Serialise concurrent registrations into the same pools (sorted: no deadlock)."""
    for barcode in sorted(set(barcodes)):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"pool|{org_id}|{barcode}")


async def insert_pools(conn: asyncpg.Connection, pools: list[NewPool]) -> None:
    if pools:
        await conn.execute(
            """INSERT INTO pools (id, org_id, barcode, lab_org_id, test_type)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[])""",
            *_column_values(pools, _columns(NewPool)),
        )


_PERSON_TYPES = ["uuid", *["bytea"] * 10, "text", "text"]  # PersonRow's fields: id, hashes and sealed data, codes


async def upsert_persons(conn: asyncpg.Connection, persons: list[PersonRow]) -> dict[bytes, uuid.UUID]:
    """Insert or refresh persons by person_key_hash; returns key hash → person id. Rows are written (and
    so locked) in key hash order: two calls sharing persons wait for each other instead of deadlocking.
    The person's hashes are the latest registration's; citizen lookups match each sample's own instead."""
    if not persons:
        return {}
    persons = sorted(persons, key=lambda p: p.person_key_hash)
    columns = _columns(PersonRow)
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_PERSON_TYPES))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[2:])
    rows = await conn.fetch(
        f"""INSERT INTO persons ({", ".join(columns)}) SELECT * FROM unnest({unnest})
            ON CONFLICT (person_key_hash) DO UPDATE SET {updates}, updated_at = now()
            RETURNING id, person_key_hash""",
        *_column_values(persons, columns),
    )
    return {bytes(r["person_key_hash"]): r["id"] for r in rows}


async def insert_samples(conn: asyncpg.Connection, samples: list[NewSample]) -> set[uuid.UUID]:
    """Returns the ids inserted (a barcode registered concurrently by another call is skipped, not an error).
    Rows are inserted in (org_id, barcode) order: a call inserting a barcode another uncommitted call
    holds waits for it, and the same order on both sides keeps that wait from becoming a deadlock."""
    if not samples:
        return set()
    samples = sorted(samples, key=lambda s: (s.org_id, s.barcode))
    columns = _columns(NewSample)
    inserted = await conn.fetch(
        f"""INSERT INTO samples ({", ".join(columns)})
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[],
                                 $8::text[], $9::timestamptz[], $10::text[], $11::uuid[], $12::bytea[],
                                 $13::bytea[], $14::bytea[], $15::bytea[])
            ON CONFLICT (org_id, barcode) DO NOTHING RETURNING id""",
        *_column_values(samples, columns),
    )
    return {r["id"] for r in inserted}


_RESULT_TYPES = [
    "uuid",
    "uuid",
    "int4",
    "text",
    "text",
    "uuid",
    "uuid",
    "timestamptz",
    "text",
    "float4",
    "text",
    "text",
]


async def insert_results(conn: asyncpg.Connection, results: list[NewResult]) -> None:
    """Insert result versions in one statement."""
    if not results:
        return
    columns = _columns(NewResult)
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_RESULT_TYPES))
    await conn.execute(
        f"INSERT INTO results ({', '.join(columns)}) SELECT * FROM unnest({unnest})",
        *_column_values(results, columns),
    )


async def set_sample_states(conn: asyncpg.Connection, states: list[SampleStateChange]) -> None:
    if states:
        await conn.execute(
            """UPDATE samples s SET state = u.state, updated_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS u(id, state) WHERE s.id = u.id""",
            *zip(*states),
        )


async def set_pool_results(conn: asyncpg.Connection, pools: list[PoolResult]) -> None:
    if pools:
        await conn.execute(
            """UPDATE pools p SET state = u.state, outcome = u.outcome, tested_at = u.tested_at, method = u.method,
                      ct_value = u.ct_value, lab_reference = u.lab_reference, resulted_at = now()
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::float4[], $7::text[])
                    AS u(id, state, outcome, tested_at, method, ct_value, lab_reference)
               WHERE p.id = u.id""",
            *_column_values(pools, _columns(PoolResult)),
        )


async def supersede(conn: asyncpg.Connection, result_id: uuid.UUID) -> None:
    await conn.execute("UPDATE results SET state = 'SUPERSEDED', superseded_at = now() WHERE id = $1", result_id)


async def withdraw(conn: asyncpg.Connection, result_id: uuid.UUID, reason: str, text: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE results SET state = 'WITHDRAWN', withdrawal_reason = $2, withdrawal_reason_text = $3,
                  withdrawn_at = now() WHERE id = $1 RETURNING *""",
        result_id,
        reason,
        text,
    )


async def append_outbox(conn: asyncpg.Connection, events: list[OutboxEvent]) -> None:
    if events:
        await conn.execute(
            """INSERT INTO outbox (kind, result_id, sample_id, payload)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::jsonb[])""",
            *_column_values(events, _columns(OutboxEvent)),
        )
        # Delivered at COMMIT: wakes the publish relay at once instead of at its next poll.
        await conn.execute("NOTIFY outbox")


# --- queries for GetSample / ListResults ----------------------------------------------------------------

_RESULT_VIEW = """
SELECT r.*, s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id,
       s.collected_at, s.sampling_site, COALESCE(p.barcode, '') AS pool_barcode
FROM results r JOIN samples s ON s.id = r.sample_id LEFT JOIN pools p ON p.id = s.pool_id
"""

# The column that scopes each query to what the viewer may see.
_SAMPLE_SCOPE = {Viewer.SAMPLING_ORG: "s.org_id", Viewer.LAB: "s.lab_org_id"}
_RESULT_SCOPE = {Viewer.SAMPLING_ORG: "s.org_id", Viewer.LAB: "r.lab_org_id"}


def _sample_where(criteria: SampleCriteria) -> tuple[str, list[object]]:
    scope = f"{_SAMPLE_SCOPE[criteria.viewer]} = $1"
    if criteria.sample_id is not None:
        return f"{scope} AND s.id = $2", [criteria.viewer_org_id, criteria.sample_id]
    return (
        f"{scope} AND s.barcode = $2 AND ($3::uuid IS NULL OR s.org_id = $3)",
        [criteria.viewer_org_id, criteria.barcode, criteria.sampling_org_id],
    )


async def sample_with_person(conn: asyncpg.Connection, criteria: SampleCriteria) -> list[asyncpg.Record]:
    """The samples matching `criteria` (several only for a barcode used by several sampling units), with
    the sealed person columns, the pool and retest-of barcodes and the ids of the retests."""
    where, args = _sample_where(criteria)
    return await conn.fetch(
        f"""SELECT s.*, COALESCE(pl.barcode, '') AS pool_barcode, COALESCE(o.barcode, '') AS retest_of_barcode,
                   pe.identity_enc, pe.full_name_enc, pe.family_name_enc, pe.given_name_enc, pe.date_of_birth_enc,
                   pe.phone_enc, pe.province_code AS person_province_code, pe.district_code AS person_district_code,
                   ARRAY(SELECT id FROM samples rt WHERE rt.retest_of = s.id ORDER BY rt.registered_at, rt.id)
                       AS retest_sample_ids
            FROM samples s JOIN persons pe ON pe.id = s.person_id
            LEFT JOIN pools pl ON pl.id = s.pool_id LEFT JOIN samples o ON o.id = s.retest_of
            WHERE {where}""",
        *args,
    )


async def results_of_sample(conn: asyncpg.Connection, sample_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_RESULT_VIEW + " WHERE r.sample_id = $1 ORDER BY r.version DESC", sample_id)


async def list_results(conn: asyncpg.Connection, criteria: ResultCriteria) -> list[asyncpg.Record]:
    """Result versions in (recorded_at, id) order within the viewer's scope (keyset paging)."""
    after = criteria.after
    return await conn.fetch(
        _RESULT_VIEW
        + f"""
        WHERE {_RESULT_SCOPE[criteria.viewer]} = $1
          AND ($2::timestamptz IS NULL OR r.recorded_at >= $2) AND ($3::timestamptz IS NULL OR r.recorded_at < $3)
          AND (cardinality($4::text[]) = 0 OR r.outcome = ANY($4)) AND r.state = ANY($5::text[])
          AND ($6::timestamptz IS NULL OR (r.recorded_at, r.id) > ($6, $7::uuid))
        ORDER BY r.recorded_at, r.id LIMIT $8""",
        criteria.viewer_org_id,
        criteria.recorded_from,
        criteria.recorded_before,
        criteria.outcomes,
        criteria.states,
        after.recorded_at if after else None,
        after.id if after else None,
        criteria.limit,
    )
