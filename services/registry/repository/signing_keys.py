"""SQL of services.registry.signing_keys: the platform's signing keys (HCERT and checkpoint-bundle keys)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.registry.page_keys import CreatedPageKey

# The columns of services.registry.signing_keys.SigningKeyRow, in its field order.
_SELECT = """
SELECT k.id::text, k.kid, k.algorithm, k.certificate_der, k.state, k.not_before, k.not_after, k.created_at,
       k.activated_at, k.deactivated_at, k.retired_at, k.purpose,
       (SELECT count(*) FROM certificates c WHERE c.signing_key_id = k.id) AS certificates_signed,
       (SELECT max(expires_at) FROM certificates c WHERE c.signing_key_id = k.id) AS last_certificate_expires_at
FROM signing_keys k"""


async def key(conn: asyncpg.Connection, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_SELECT + " WHERE k.id = $1", key_id)


async def insert_key(
    conn: asyncpg.Connection,
    *,
    key_id: uuid.UUID,
    kid: bytes,
    algorithm: str,
    certificate_der: bytes,
    private_key_enc: bytes | None,
    private_key_ref: str | None,
    not_before: datetime,
    not_after: datetime,
    purpose: str,
) -> None:
    await conn.execute(
        """INSERT INTO signing_keys (id, kid, algorithm, certificate_der, private_key_enc, private_key_ref,
                                     not_before, not_after, purpose)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        key_id,
        kid,
        algorithm,
        certificate_der,
        private_key_enc,
        private_key_ref,
        not_before,
        not_after,
        purpose,
    )


async def deactivate_active(conn: asyncpg.Connection, purpose: str) -> str | None:
    """DEACTIVATE the ACTIVE key of `purpose`, if any; returns its id."""
    return await conn.fetchval(
        "UPDATE signing_keys SET state = 'DEACTIVATED', deactivated_at = now()"
        " WHERE state = 'ACTIVE' AND purpose = $1 RETURNING id::text",
        purpose,
    )


async def mark_active(conn: asyncpg.Connection, key_id: uuid.UUID) -> None:
    await conn.execute("UPDATE signing_keys SET state = 'ACTIVE', activated_at = now() WHERE id = $1", key_id)


async def notify_signing_keys(conn: asyncpg.Connection) -> None:
    """Tell publish_svc (at commit) that an active key changed (its relay and its bundle builder listen)."""
    await conn.execute("NOTIFY signing_keys")


async def mark_retired(conn: asyncpg.Connection, key_id: uuid.UUID) -> None:
    """RETIRED, with its private half (sealed or referenced) dropped for good."""
    await conn.execute(
        "UPDATE signing_keys SET state = 'RETIRED', retired_at = now(), private_key_enc = NULL, private_key_ref = NULL "
        "WHERE id = $1",
        key_id,
    )


async def list_keys(
    conn: asyncpg.Connection, state: str | None, purpose: str | None, limit: int, after: CreatedPageKey | None
) -> list[asyncpg.Record]:
    """Newest first, then id, after the `after` row; of one state and purpose when they are given."""
    return await conn.fetch(
        _SELECT
        + """ WHERE ($1::text IS NULL OR k.state = $1) AND ($5::text IS NULL OR k.purpose = $5)
                      AND ($2::timestamptz IS NULL OR (k.created_at, k.id) < ($2, $3::uuid))
                      ORDER BY k.created_at DESC, k.id DESC LIMIT $4""",
        state,
        after.created_at if after else None,
        after.id if after else None,
        limit,
        purpose,
    )


async def active_key_material(conn: asyncpg.Connection, purpose: str) -> asyncpg.Record | None:
    """The ACTIVE key of `purpose`: its id, algorithm, certificate and private half (sealed or a file path)."""
    return await conn.fetchrow(
        "SELECT id, algorithm, certificate_der, private_key_enc, private_key_ref"
        " FROM signing_keys WHERE state = 'ACTIVE' AND purpose = $1",
        purpose,
    )
