"""SQL of publish_svc: pending outbox events, certificates, the feed and partner cursors."""

from __future__ import annotations

import uuid

import asyncpg

# The relay leader's session-level advisory lock (any constant shared by all replicas; "relay").
RELAY_LOCK = 0x72656C6179

PENDING_EVENTS = """
SELECT o.id AS outbox_id, o.kind, o.payload, o.created_at AS committed_at,
       r.id AS result_id, r.sample_id, r.version, r.outcome, r.state, r.lab_org_id, r.tested_at, r.method,
       r.ct_value, r.lab_reference, r.recorded_at, r.amendment_reason, r.withdrawal_reason,
       r.withdrawal_reason_text, r.withdrawn_at,
       s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id, s.collected_at,
       s.sampling_site, s.person_id, COALESCE(pl.barcode, '') AS pool_barcode, lab.name AS lab_name,
       pe.identity_enc, pe.full_name_enc, pe.family_name_enc, pe.given_name_enc, pe.date_of_birth_enc, pe.phone_enc,
       pe.province_code AS person_province_code, pe.district_code AS person_district_code
FROM outbox o
JOIN results r ON r.id = o.result_id
JOIN samples s ON s.id = o.sample_id
JOIN persons pe ON pe.id = s.person_id
JOIN organisations lab ON lab.id = r.lab_org_id
LEFT JOIN pools pl ON pl.id = s.pool_id
WHERE o.relayed_at IS NULL
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
"""


async def pending_events(conn, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(PENDING_EVENTS, limit)


async def head_position(conn) -> int:
    return await conn.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")


async def certificates_of_results(conn, result_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT id, uvci, result_id, status, status_version, expires_at FROM certificates "
        "WHERE result_id = ANY($1::uuid[])",
        result_ids,
    )
    return {r["result_id"]: r for r in rows}


async def insert_certificates(conn, rows: list[tuple]) -> None:
    """rows: (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at, expires_at)."""
    if rows:
        await conn.execute(
            """INSERT INTO certificates (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at, expires_at,
                                         cached_version)
               SELECT *, 1 FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bytea[],
                                       $7::timestamptz[], $8::timestamptz[])""",
            *zip(*rows),
        )


async def revoke_certificates(conn, revocations: list[tuple[uuid.UUID, str]]) -> None:
    """revocations: (certificate id, reason). Each bumps status_version once."""
    if revocations:
        await conn.execute(
            """UPDATE certificates c SET status = 'REVOKED', status_version = c.status_version + 1,
                      revoked_at = now(), revocation_reason = u.reason
               FROM unnest($1::uuid[], $2::text[]) AS u(id, reason)
               WHERE c.id = u.id AND c.status = 'VALID'""",
            *zip(*revocations),
        )


async def insert_feed_events(conn, rows: list[tuple]) -> None:
    """rows: (position, outbox_id, kind, person_id, result_id, certificate_id, revoked_certificate_id,
    payload_enc, committed_at)."""
    if rows:
        await conn.execute(
            """INSERT INTO feed_events (position, outbox_id, kind, person_id, result_id, certificate_id,
                                        revoked_certificate_id, payload_enc, committed_at)
               SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[],
                                    $7::uuid[], $8::bytea[], $9::timestamptz[])""",
            *zip(*rows),
        )


async def mark_relayed(conn, outbox_ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET relayed_at = clock_timestamp() WHERE id = ANY($1::int8[])", outbox_ids)


async def statuses_behind_cache(conn, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, uvci, status, status_version, expires_at FROM certificates "
        "WHERE cached_version < status_version ORDER BY id LIMIT $1",
        limit,
    )


async def mark_behind(conn, certificate_ids: list[uuid.UUID]) -> None:
    """Redis did not take these statuses: let the catch-up write them again."""
    await conn.execute("UPDATE certificates SET cached_version = 0 WHERE id = ANY($1::uuid[])", certificate_ids)


async def mark_cached(conn, entries: list[tuple[uuid.UUID, int]]) -> None:
    if entries:
        await conn.execute(
            """UPDATE certificates c SET cached_version = GREATEST(c.cached_version, u.version)
               FROM unnest($1::uuid[], $2::int8[]) AS u(id, version) WHERE c.id = u.id""",
            *zip(*entries),
        )


# --- feed reads ---------------------------------------------------------------------------------------


async def feed_page(pool, from_position: int, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT position, person_id, payload_enc FROM feed_events WHERE position >= $1 ORDER BY position LIMIT $2",
        from_position,
        limit,
    )


async def partner(pool, partner_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """SELECT p.id, p.name, p.personal_data_access, COALESCE(c.acked_position, 0) AS acked_position,
                  c.updated_at AS acked_at
           FROM partners p LEFT JOIN partner_cursors c ON c.partner_id = p.id WHERE p.id = $1""",
        partner_id,
    )


async def advance_cursor(conn, partner_id: uuid.UUID, position: int) -> int:
    return await conn.fetchval(
        """INSERT INTO partner_cursors (partner_id, acked_position) VALUES ($1, $2)
           ON CONFLICT (partner_id) DO UPDATE
               SET acked_position = GREATEST(partner_cursors.acked_position, EXCLUDED.acked_position),
                   updated_at = CASE WHEN EXCLUDED.acked_position > partner_cursors.acked_position
                                     THEN now() ELSE partner_cursors.updated_at END
           RETURNING acked_position""",
        partner_id,
        position,
    )


async def feed_status(pool, partner_id: uuid.UUID | None):
    head = await pool.fetchrow("SELECT position, committed_at FROM feed_events ORDER BY position DESC LIMIT 1")
    pending = await pool.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE relayed_at IS NULL"
    )
    partners = await pool.fetch(
        """SELECT p.id, p.name, COALESCE(c.acked_position, 0) AS acked_position, c.updated_at AS acked_at,
                  (SELECT f.committed_at FROM feed_events f WHERE f.position = COALESCE(c.acked_position, 0) + 1)
                      AS oldest_unacked_committed_at
           FROM partners p LEFT JOIN partner_cursors c ON c.partner_id = p.id
           WHERE $1::uuid IS NULL OR p.id = $1 ORDER BY p.name, p.id""",
        partner_id,
    )
    return head, pending, partners


async def certificate_by_uvci(pool, uvci: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT id, uvci, status, qr_enc, expires_at FROM certificates WHERE uvci = $1", uvci)


# Current result versions of the persons matching a keyed hash ({column}: identity_hash or phone_hash)
# and birth date, newest sample first. Superseded versions are left out.
CITIZEN_RESULTS = """
SELECT r.*, s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id,
       s.collected_at, s.sampling_site, s.person_id, COALESCE(pl.barcode, '') AS pool_barcode,
       pe.identity_enc, pe.full_name_enc, pe.family_name_enc, pe.given_name_enc, pe.date_of_birth_enc,
       pe.phone_enc, pe.province_code AS person_province_code, pe.district_code AS person_district_code,
       c.uvci, c.qr_enc, c.status AS certificate_status, c.issued_at, c.expires_at AS certificate_expires_at,
       c.revoked_at, k.kid
FROM persons pe
JOIN samples s ON s.person_id = pe.id
JOIN results r ON r.sample_id = s.id AND r.state <> 'SUPERSEDED'
LEFT JOIN pools pl ON pl.id = s.pool_id
LEFT JOIN certificates c ON c.result_id = r.id
LEFT JOIN signing_keys k ON k.id = c.signing_key_id
WHERE pe.{column} = $1 AND pe.dob_hash = $2
ORDER BY s.collected_at DESC, r.id LIMIT $3
"""
