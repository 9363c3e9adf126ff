"""SQL of result_svc: samples, pools, persons, results and the outbox.

Plain parameterised statements over an asyncpg connection that the caller holds inside a
transaction. Batch writes use `unnest` so a batch of hundreds of items costs a handful of round trips.
Rows are locked (`FOR UPDATE`, in id order to avoid deadlocks) before any state change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# --- reads --------------------------------------------------------------------------------------------


async def lab_ids(conn, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM organisations WHERE id = ANY($1::uuid[]) AND kind = 'LAB'", ids)
    return {r["id"] for r in rows}


async def samples_of_org_by_barcode(conn, org_id: uuid.UUID, barcodes: list[str], *, lock: bool = False):
    """The organisation's samples with these barcodes, with their person's key hash."""
    return await conn.fetch(
        f"""SELECT s.id, s.barcode, s.state, s.registration_hash, s.person_id, p.person_key_hash
            FROM samples s JOIN persons p ON p.id = s.person_id
            WHERE s.org_id = $1 AND s.barcode = ANY($2::text[]) ORDER BY s.id {"FOR UPDATE OF s" if lock else ""}""",
        org_id,
        barcodes,
    )


async def pools_of_org_by_barcode(conn, org_id: uuid.UUID, barcodes: list[str]):
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


async def lab_samples_by_barcode(conn, lab_id: uuid.UUID, barcodes: list[str]):
    """Samples sent to the lab with these barcodes, locked for a result change."""
    return await conn.fetch(
        f"SELECT {_SAMPLE_COLUMNS} FROM samples s WHERE s.lab_org_id = $1 AND s.barcode = ANY($2::text[]) "
        "ORDER BY s.id FOR UPDATE",
        lab_id,
        barcodes,
    )


async def barcodes_at_other_labs(conn, lab_id: uuid.UUID, barcodes: list[str], table: str) -> set[str]:
    rows = await conn.fetch(
        f"SELECT DISTINCT barcode FROM {table} WHERE barcode = ANY($1::text[]) AND lab_org_id <> $2", barcodes, lab_id
    )
    return {r["barcode"] for r in rows}


async def lab_pools_by_barcode(conn, lab_id: uuid.UUID, barcodes: list[str]):
    return await conn.fetch(
        """SELECT id, org_id, barcode, lab_org_id, test_type, state, outcome, tested_at, method, ct_value, lab_reference
           FROM pools WHERE lab_org_id = $1 AND barcode = ANY($2::text[]) ORDER BY id FOR UPDATE""",
        lab_id,
        barcodes,
    )


async def pool_members(conn, pool_ids: list[uuid.UUID]):
    return await conn.fetch(
        f"SELECT {_SAMPLE_COLUMNS} FROM samples s WHERE s.pool_id = ANY($1::uuid[]) ORDER BY s.id FOR UPDATE",
        pool_ids,
    )


async def current_results(conn, sample_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM results WHERE sample_id = ANY($1::uuid[]) AND state <> 'SUPERSEDED'", sample_ids
    )
    return {r["sample_id"]: r for r in rows}


# --- writes -------------------------------------------------------------------------------------------


async def lock_pool_barcodes(conn, org_id: uuid.UUID, barcodes: list[str]) -> None:
    """Serialise concurrent registrations into the same pools (sorted: no deadlock)."""
    for barcode in sorted(set(barcodes)):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"pool|{org_id}|{barcode}")


async def insert_pools(conn, rows: list[tuple]) -> None:
    """rows: (id, org_id, barcode, lab_org_id, test_type)."""
    if rows:
        await conn.execute(
            """INSERT INTO pools (id, org_id, barcode, lab_org_id, test_type)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[])""",
            *zip(*rows),
        )


@dataclass
class PersonRow:
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


async def upsert_persons(conn, persons: list[PersonRow]) -> dict[bytes, uuid.UUID]:
    """Insert or refresh persons by person_key_hash; returns key hash → person id."""
    if not persons:
        return {}
    columns = list(PersonRow.__dataclass_fields__)
    values = [[getattr(p, c) for p in persons] for c in columns]
    types = [
        "uuid",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "bytea",
        "text",
        "text",
    ]
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[2:])
    rows = await conn.fetch(
        f"""INSERT INTO persons ({", ".join(columns)}) SELECT * FROM unnest({unnest})
            ON CONFLICT (person_key_hash) DO UPDATE SET {updates}, updated_at = now()
            RETURNING id, person_key_hash""",
        *values,
    )
    return {bytes(r["person_key_hash"]): r["id"] for r in rows}


async def insert_samples(conn, rows: list[tuple]) -> set[uuid.UUID]:
    """rows: (id, org_id, barcode, person_id, pool_id, lab_org_id, test_type, rat_device_id, collected_at,
    sampling_site, retest_of, registration_hash). Returns the ids inserted (a barcode registered
    concurrently by another call is skipped, not an error)."""
    if not rows:
        return set()
    inserted = await conn.fetch(
        """INSERT INTO samples (id, org_id, barcode, person_id, pool_id, lab_org_id, test_type, rat_device_id,
                                collected_at, sampling_site, retest_of, registration_hash)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[],
                                $8::text[], $9::timestamptz[], $10::text[], $11::uuid[], $12::bytea[])
           ON CONFLICT (org_id, barcode) DO NOTHING RETURNING id""",
        *zip(*rows),
    )
    return {r["id"] for r in inserted}


@dataclass
class NewResult:
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


async def insert_results(conn, results: list[NewResult]) -> None:
    """Insert result versions in one statement."""
    if not results:
        return
    columns = list(NewResult.__dataclass_fields__)
    types = ["uuid", "uuid", "int4", "text", "text", "uuid", "uuid", "timestamptz", "text", "float4", "text", "text"]
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    await conn.execute(
        f"INSERT INTO results ({', '.join(columns)}) SELECT * FROM unnest({unnest})",
        *[[getattr(r, c) for r in results] for c in columns],
    )


async def set_sample_states(conn, states: list[tuple[uuid.UUID, str]]) -> None:
    if states:
        await conn.execute(
            """UPDATE samples s SET state = u.state, updated_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS u(id, state) WHERE s.id = u.id""",
            *zip(*states),
        )


async def set_pool_results(conn, rows: list[tuple]) -> None:
    """rows: (pool_id, state, outcome, tested_at, method, ct_value, lab_reference)."""
    if rows:
        await conn.execute(
            """UPDATE pools p SET state = u.state, outcome = u.outcome, tested_at = u.tested_at, method = u.method,
                      ct_value = u.ct_value, lab_reference = u.lab_reference, resulted_at = now()
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::float4[], $7::text[])
                    AS u(id, state, outcome, tested_at, method, ct_value, lab_reference)
               WHERE p.id = u.id""",
            *zip(*rows),
        )


async def supersede(conn, result_id: uuid.UUID) -> None:
    await conn.execute("UPDATE results SET state = 'SUPERSEDED', superseded_at = now() WHERE id = $1", result_id)


async def withdraw(conn, result_id: uuid.UUID, reason: str, text: str) -> asyncpg.Record:
    return await conn.fetchrow(
        """UPDATE results SET state = 'WITHDRAWN', withdrawal_reason = $2, withdrawal_reason_text = $3,
                  withdrawn_at = now() WHERE id = $1 RETURNING *""",
        result_id,
        reason,
        text,
    )


async def append_outbox(conn, events: list[tuple[str, uuid.UUID, uuid.UUID, dict]]) -> None:
    """events: (kind, result_id, sample_id, payload with ids and codes only)."""
    if events:
        kinds, result_ids, sample_ids, payloads = zip(*events)
        await conn.execute(
            """INSERT INTO outbox (kind, result_id, sample_id, payload)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::jsonb[])""",
            kinds,
            result_ids,
            sample_ids,
            payloads,
        )
        # Delivered at COMMIT: wakes the publish relay at once instead of at its next poll.
        await conn.execute("NOTIFY outbox")


# --- queries for GetSample / ListResults ----------------------------------------------------------------

_RESULT_VIEW = """
SELECT r.*, s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id,
       s.collected_at, s.sampling_site, COALESCE(p.barcode, '') AS pool_barcode
FROM results r JOIN samples s ON s.id = r.sample_id LEFT JOIN pools p ON p.id = s.pool_id
"""


async def sample_with_person(conn, where: str, *args):
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


async def results_of_sample(conn, sample_id: uuid.UUID):
    return await conn.fetch(_RESULT_VIEW + " WHERE r.sample_id = $1 ORDER BY r.version DESC", sample_id)


async def list_results(
    conn,
    scope_column: str,
    org_id: uuid.UUID,
    start,
    end,
    outcomes: list[str],
    states: list[str],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
):
    """Result versions in (recorded_at, id) order within the caller's scope (keyset paging)."""
    assert scope_column in ("s.org_id", "r.lab_org_id")
    return await conn.fetch(
        _RESULT_VIEW
        + f"""
        WHERE {scope_column} = $1
          AND ($2::timestamptz IS NULL OR r.recorded_at >= $2) AND ($3::timestamptz IS NULL OR r.recorded_at < $3)
          AND (cardinality($4::text[]) = 0 OR r.outcome = ANY($4)) AND r.state = ANY($5::text[])
          AND ($6::timestamptz IS NULL OR (r.recorded_at, r.id) > ($6, $7::uuid))
        ORDER BY r.recorded_at, r.id LIMIT $8""",
        org_id,
        start,
        end,
        outcomes,
        states,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
