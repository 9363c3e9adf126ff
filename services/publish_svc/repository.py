"""SQL of publish_svc: the relay's lease, pending outbox events, certificates, the feed, partner cursors
and citizen lookups.

What the relay writes in bulk (`IssuedCertificate`, `Revocation`, `FeedEntry`) are NamedTuples whose
field order is the column order of the `unnest(...)` they are written through, so a batch goes to
Postgres as columns without being copied into other tuples. What the service logic reads comes back
as named rows; wide rows that only feed the shared message builders (services.common.messages) stay
asyncpg Records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

import asyncpg

from services.common.db import fetch

PENDING_EVENTS = """
SELECT o.id AS outbox_id, o.kind, o.payload, o.created_at AS committed_at,
       r.id AS result_id, s.id AS sample_id, r.version, r.outcome, r.state, r.lab_org_id, r.tested_at, r.method,
       r.ct_value, r.lab_reference, r.recorded_at, r.amendment_reason, r.withdrawal_reason,
       r.withdrawal_reason_text, r.withdrawn_at,
       s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id, s.collected_at,
       s.sampling_site, s.person_id, COALESCE(pl.barcode, '') AS pool_barcode, lab.name AS lab_name,
       s.lab_org_id AS sample_lab_org_id, s.registered_at, s.state AS sample_state,
       pe.identity_enc, pe.full_name_enc, pe.family_name_enc, pe.given_name_enc, pe.date_of_birth_enc, pe.phone_enc,
       pe.province_code AS person_province_code, pe.district_code AS person_district_code
FROM outbox o
LEFT JOIN results r ON r.id = o.result_id  -- none for SAMPLE_REGISTERED
JOIN samples s ON s.id = o.sample_id
JOIN persons pe ON pe.id = s.person_id
LEFT JOIN organisations lab ON lab.id = r.lab_org_id
LEFT JOIN pools pl ON pl.id = s.pool_id
WHERE o.relayed_at IS NULL
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
"""

# Reads that run as well on the pool (a stream, outside a transaction) as on a transaction's connection.
Executor = asyncpg.Pool | asyncpg.Connection


class CertificateState(NamedTuple):
    """A certificate's status at a version: what the relay tracks within a batch and Redis caches."""

    id: uuid.UUID
    uvci: str
    status: str  # VALID or REVOKED
    status_version: int
    expires_at: datetime


class IssuedCertificate(NamedTuple):
    """A new certificate row (inserted already marked cached at version 1)."""

    id: uuid.UUID
    uvci: str
    result_id: uuid.UUID
    person_id: uuid.UUID
    signing_key_id: uuid.UUID
    qr_enc: bytes
    issued_at: datetime
    expires_at: datetime


class Revocation(NamedTuple):
    certificate_id: uuid.UUID
    reason: str  # the event kind that revoked it: AMENDED or WITHDRAWN


class FeedEntry(NamedTuple):
    """One feed event: its gapless position and the sealed, serialised ResultEvent."""

    position: int
    outbox_id: int
    kind: str
    person_id: uuid.UUID
    result_id: uuid.UUID | None  # None for SAMPLE_REGISTERED
    certificate_id: uuid.UUID | None
    revoked_certificate_id: uuid.UUID | None
    payload_enc: bytes
    committed_at: datetime
    relay_epoch: int  # the lease epoch of the leader that wrote it
    traceparent: str | None  # the relay span's trace context, which the feed delivery continues


@dataclass(frozen=True, slots=True)
class Partner:
    id: uuid.UUID
    name: str
    personal_data_access: bool
    acked_position: int  # 0 before its first acknowledgement
    acked_at: datetime | None


@dataclass(frozen=True, slots=True)
class PartnerLag:
    id: uuid.UUID
    name: str
    acked_position: int
    acked_at: datetime | None
    oldest_unacked_committed_at: datetime | None  # None when the partner is at the head


@dataclass(frozen=True, slots=True)
class FeedStatus:
    head_position: int  # 0 while the feed is empty
    head_committed_at: datetime | None
    pending_events: int  # committed outbox events not yet relayed
    oldest_pending_at: datetime | None
    partners: list[PartnerLag]


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    uvci: str
    status: str
    qr_enc: bytes | None  # None: erased under the retention policy (docs/retention.md)
    expires_at: datetime


# --- the relay ------------------------------------------------------------------------------------------


async def take_lease(conn: asyncpg.Connection, holder: str, seconds: float) -> int | None:
    """Take the relay lease if it has expired or its holder's session has ended (a killed process, a dead
    host: no need to wait out the lease); returns the new epoch, or None while another replica holds it.
    A lease row locked by the leader's open batch is skipped, not waited for: a batch in progress renews
    the lease before it commits."""
    return await conn.fetchval(
        """UPDATE relay_lease SET epoch = epoch + 1, holder = $1, holder_backend = pg_backend_pid(),
                  acquired_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => $2)
           WHERE singleton = (
               SELECT singleton FROM relay_lease l
               WHERE l.expires_at < clock_timestamp()
                  OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_backend)
               FOR UPDATE OF l SKIP LOCKED)
           RETURNING epoch""",
        holder,
        seconds,
    )


async def renew_lease(conn: asyncpg.Connection, epoch: int, seconds: float) -> bool:
    """Extend the lease of `epoch` (inside a batch transaction: the row stays locked until it ends, so no
    replica can take over meanwhile). False: another replica took over, this one is deposed."""
    renewed = await conn.fetchval(
        """UPDATE relay_lease SET expires_at = clock_timestamp() + make_interval(secs => $2)
           WHERE epoch = $1 RETURNING epoch""",
        epoch,
        seconds,
    )
    return renewed is not None


async def release_lease(conn: asyncpg.Connection, epoch: int) -> None:
    """Let a standby take over at once (a clean shutdown), if `epoch` still leads."""
    await conn.execute("UPDATE relay_lease SET expires_at = '-infinity' WHERE epoch = $1", epoch)


async def notify_feed(conn: asyncpg.Connection, head: int) -> None:
    """Wake the feed's listeners when the transaction commits."""
    await conn.execute("SELECT pg_notify('feed', $1)", str(head))


async def pending_events(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The oldest unrelayed outbox rows, locked, with the result, sample and sealed person columns."""
    return await conn.fetch(PENDING_EVENTS, limit)


async def head_position(conn: Executor) -> int:
    return await conn.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")


async def certificates_of_results(
    conn: asyncpg.Connection, result_ids: list[uuid.UUID]
) -> dict[uuid.UUID, CertificateState]:
    rows = await conn.fetch(
        "SELECT id, uvci, result_id, status, status_version, expires_at FROM certificates "
        "WHERE result_id = ANY($1::uuid[])",
        result_ids,
    )
    return {r["result_id"]: _certificate_state(r) for r in rows}


def _certificate_state(row: asyncpg.Record) -> CertificateState:
    return CertificateState(row["id"], row["uvci"], row["status"], row["status_version"], row["expires_at"])


async def insert_certificates(conn: asyncpg.Connection, rows: list[IssuedCertificate]) -> None:
    if rows:
        await conn.execute(
            """INSERT INTO certificates (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at, expires_at,
                                         cached_version)
               SELECT *, 1 FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bytea[],
                                       $7::timestamptz[], $8::timestamptz[])""",
            *zip(*rows),  # one array per field, in IssuedCertificate's field order
        )


async def revoke_certificates(conn: asyncpg.Connection, revocations: list[Revocation]) -> None:
    """Each revocation of a VALID certificate bumps its status_version once."""
    if revocations:
        await conn.execute(
            """UPDATE certificates c SET status = 'REVOKED', status_version = c.status_version + 1,
                      revoked_at = now(), revocation_reason = u.reason
               FROM unnest($1::uuid[], $2::text[]) AS u(id, reason)
               WHERE c.id = u.id AND c.status = 'VALID'""",
            *zip(*revocations),
        )


async def insert_feed_events(conn: asyncpg.Connection, rows: list[FeedEntry]) -> None:
    if rows:
        await conn.execute(
            """INSERT INTO feed_events (position, outbox_id, kind, person_id, result_id, certificate_id,
                                        revoked_certificate_id, payload_enc, committed_at, relay_epoch, traceparent)
               SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[],
                                    $7::uuid[], $8::bytea[], $9::timestamptz[], $10::int8[], $11::text[])""",
            *zip(*rows),  # one array per field, in FeedEntry's field order
        )


async def mark_relayed(conn: asyncpg.Connection, outbox_ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET relayed_at = clock_timestamp() WHERE id = ANY($1::int8[])", outbox_ids)


async def statuses_behind_cache(conn: asyncpg.Connection, limit: int) -> list[CertificateState]:
    rows = await conn.fetch(
        "SELECT id, uvci, status, status_version, expires_at FROM certificates "
        "WHERE cached_version < status_version ORDER BY id LIMIT $1",
        limit,
    )
    return [_certificate_state(r) for r in rows]


async def mark_behind(conn: asyncpg.Connection, certificate_ids: list[uuid.UUID]) -> None:
    """Redis did not take these statuses: let the catch-up write them again."""
    await conn.execute("UPDATE certificates SET cached_version = 0 WHERE id = ANY($1::uuid[])", certificate_ids)


async def mark_cached(conn: asyncpg.Connection, entries: list[tuple[uuid.UUID, int]]) -> None:
    """entries: (certificate id, status version Redis now holds)."""
    if entries:
        await conn.execute(
            """UPDATE certificates c SET cached_version = GREATEST(c.cached_version, u.version)
               FROM unnest($1::uuid[], $2::int8[]) AS u(id, version) WHERE c.id = u.id""",
            *zip(*entries),
        )


# --- feed reads ---------------------------------------------------------------------------------------


async def feed_page(pool: Executor, from_position: int, limit: int) -> list[asyncpg.Record]:
    """Rows of (position, person_id, payload_enc, traceparent) from `from_position` on; a gap means not yet
    visible."""
    return await pool.fetch(
        "SELECT position, person_id, payload_enc, traceparent FROM feed_events WHERE position >= $1"
        " ORDER BY position LIMIT $2",
        from_position,
        limit,
    )


async def partner(pool: Executor, partner_id: uuid.UUID) -> Partner | None:
    row = await pool.fetchrow(
        """SELECT p.id, p.name, p.personal_data_access, COALESCE(c.acked_position, 0) AS acked_position,
                  c.updated_at AS acked_at
           FROM partners p LEFT JOIN partner_cursors c ON c.partner_id = p.id WHERE p.id = $1""",
        partner_id,
    )
    if row is None:
        return None
    return Partner(row["id"], row["name"], row["personal_data_access"], row["acked_position"], row["acked_at"])


async def advance_cursor(conn: asyncpg.Connection, partner_id: uuid.UUID, position: int) -> int:
    """Move the partner's cursor forward (never back); returns the cursor."""
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


async def active_key_expiries(conn: Executor) -> dict[str, datetime]:
    """The certificate expiry (not_after) of the ACTIVE key of each purpose (DCC, BUNDLE) that has one."""
    rows = await conn.fetch("SELECT purpose, not_after FROM signing_keys WHERE state = 'ACTIVE'")
    return {row["purpose"]: row["not_after"] for row in rows}


async def feed_status(conn: asyncpg.Connection, partner_id: uuid.UUID | None) -> FeedStatus:
    """The head, the relay's backlog, and the cursor of every partner (or of `partner_id` only)."""
    head = await conn.fetchrow("SELECT position, committed_at FROM feed_events ORDER BY position DESC LIMIT 1")
    pending = await conn.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE relayed_at IS NULL"
    )
    partners = await conn.fetch(
        """SELECT p.id, p.name, COALESCE(c.acked_position, 0) AS acked_position, c.updated_at AS acked_at,
                  (SELECT f.committed_at FROM feed_events f WHERE f.position = COALESCE(c.acked_position, 0) + 1)
                      AS oldest_unacked_committed_at
           FROM partners p LEFT JOIN partner_cursors c ON c.partner_id = p.id
           WHERE $1::uuid IS NULL OR p.id = $1 ORDER BY p.name, p.id""",
        partner_id,
    )
    return FeedStatus(
        head_position=head["position"] if head else 0,
        head_committed_at=head["committed_at"] if head else None,
        # An aggregate without GROUP BY always returns its one row.
        pending_events=pending["n"] if pending else 0,
        oldest_pending_at=pending["oldest"] if pending else None,
        partners=[
            PartnerLag(p["id"], p["name"], p["acked_position"], p["acked_at"], p["oldest_unacked_committed_at"])
            for p in partners
        ],
    )


# Current result versions of the samples whose OWN registration carried the keyed hash ({column}:
# identity_hash or phone_hash, matched as samples.lookup_{column}) and the birth date, newest sample
# first. Superseded versions are left out. Never the person's hashes: those are the latest registration's,
# and a later registration of the same identity number (any sampling unit, any phone or birth date) must
# not change which earlier results a lookup finds (migrations/0007_registration_lookups.sql).
CITIZEN_RESULTS = """
SELECT r.*, s.barcode AS sample_barcode, s.org_id AS sampling_org_id, s.test_type, s.rat_device_id,
       s.collected_at, s.sampling_site, s.person_id, COALESCE(pl.barcode, '') AS pool_barcode,
       s.id AS pending_sample_id, s.lab_org_id AS sample_lab_org_id, s.registered_at, s.state AS sample_state,
       pe.identity_enc, pe.full_name_enc, pe.family_name_enc, pe.given_name_enc, pe.date_of_birth_enc,
       pe.phone_enc, pe.province_code AS person_province_code, pe.district_code AS person_district_code,
       c.uvci, c.qr_enc, c.status AS certificate_status, c.issued_at, c.expires_at AS certificate_expires_at,
       c.revoked_at, k.kid
FROM samples s
JOIN persons pe ON pe.id = s.person_id
-- No current result yet: the sample is pending (its r.* columns are NULL).
LEFT JOIN results r ON r.sample_id = s.id AND r.state <> 'SUPERSEDED'
LEFT JOIN pools pl ON pl.id = s.pool_id
LEFT JOIN certificates c ON c.result_id = r.id
LEFT JOIN signing_keys k ON k.id = c.signing_key_id
WHERE s.lookup_{column} = $1 AND s.lookup_dob_hash = $2
ORDER BY s.collected_at DESC, r.id LIMIT $3
"""

# What a citizen is looked up by: the keyed hash of an identity document or of a phone number.
LookupColumn = Literal["identity_hash", "phone_hash"]


async def citizen_results(
    pool: asyncpg.Pool, column: LookupColumn, key_hash: bytes, dob_hash: bytes, limit: int
) -> list[asyncpg.Record]:
    """Rows for services.common.messages, plus the certificate's columns (uvci NULL: no certificate)."""
    if column not in ("identity_hash", "phone_hash"):  # it becomes part of the SQL text
        raise ValueError(f"not a lookup column: {column}")
    return await fetch(pool, CITIZEN_RESULTS.format(column=column), key_hash, dob_hash, limit)


# --- the read audit (migrations/0008_read_audit.sql) ----------------------------------------------------

# Why personal data was read: a citizen lookup, a QR image, a printable certificate (PDF), or a feed batch
# with persons in it.
ReadPurpose = Literal["CITIZEN_LOOKUP", "QR_RENDER", "DOCUMENT_RENDER", "FEED_DELIVERY"]


@dataclass(frozen=True, slots=True)
class PersonalDataRead:
    """One audit row. Ids, counts and positions only: never a name, a birth date, a number or a lookup hash."""

    principal_kind: str
    principal_id: uuid.UUID
    purpose: ReadPurpose
    result_ids: list[uuid.UUID]
    detail: dict[str, object]


async def record_read(conn: Executor, read: PersonalDataRead) -> None:
    """One INSERT (a feed batch of up to a page of events is one row, not one per event)."""
    await conn.execute(
        """INSERT INTO personal_data_reads (principal_kind, principal_id, purpose, result_ids, detail)
           VALUES ($1, $2, $3, $4::uuid[], $5)""",
        read.principal_kind,
        read.principal_id,
        read.purpose,
        read.result_ids,
        read.detail,  # jsonb: the pool's codec encodes it
    )


@dataclass(frozen=True, slots=True)
class RenderableCertificate:
    """A certificate to render as a QR image or a PDF, with the result it certifies (for the read audit)."""

    certificate: StoredCertificate
    result_id: uuid.UUID


async def certificate_for_render(conn: asyncpg.Connection, uvci: str) -> RenderableCertificate | None:
    row = await conn.fetchrow(
        "SELECT uvci, status, qr_enc, expires_at, result_id FROM certificates WHERE uvci = $1", uvci
    )
    if row is None:
        return None
    return RenderableCertificate(
        StoredCertificate(row["uvci"], row["status"], row["qr_enc"], row["expires_at"]), row["result_id"]
    )
