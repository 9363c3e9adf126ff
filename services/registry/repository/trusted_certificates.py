"""SQL of services.registry.trusted_certificates: imported foreign document signer certificates."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.registry.page_keys import TrustedPageKey


async def insert_trusted(
    conn: asyncpg.Connection,
    *,
    certificate_id: uuid.UUID,
    kid: bytes,
    country: str,
    certificate_der: bytes,
    not_before: datetime,
    not_after: datetime,
    key_usage: list[str],
) -> None:
    await conn.execute(
        """INSERT INTO trusted_certificates (id, kid, country, certificate_der, not_before, not_after,
                                          key_usage)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        certificate_id,
        kid,
        country,
        certificate_der,
        not_before,
        not_after,
        key_usage,
    )


async def trusted(conn: asyncpg.Connection, certificate_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM trusted_certificates WHERE id = $1", certificate_id)


async def mark_removed(conn: asyncpg.Connection, certificate_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE trusted_certificates SET removed_at = now() WHERE id = $1 RETURNING *", certificate_id
    )


async def list_trusted(
    conn: asyncpg.Connection, country: str | None, limit: int, after: TrustedPageKey | None
) -> list[asyncpg.Record]:
    """By country, then expiry, then id, after the `after` row."""
    return await conn.fetch(
        """SELECT * FROM trusted_certificates WHERE ($1::text IS NULL OR country = $1)
             AND ($2::text IS NULL OR (country, not_after, id) > ($2, $3::timestamptz, $4::uuid))
           ORDER BY country, not_after, id LIMIT $5""",
        country,
        after.country if after else None,
        after.not_after if after else None,
        after.id if after else None,
        limit,
    )
