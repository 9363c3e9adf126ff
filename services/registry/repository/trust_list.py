"""SQL of services.registry.trust_list: the append-only log of trust-list changes."""

from __future__ import annotations

import asyncpg


async def insert_change(
    conn: asyncpg.Connection,
    *,
    sha256_fingerprint: bytes,
    kid: bytes,
    certificate_der: bytes,
    country: str,
    change: str,
) -> None:
    await conn.execute(
        """INSERT INTO trust_list_changes (sha256_fingerprint, kid, certificate_der, country, change)
           VALUES ($1, $2, $3, $4, $5)""",
        sha256_fingerprint,
        kid,
        certificate_der,
        country,
        change,
    )


async def notify_trust_list(conn: asyncpg.Connection) -> None:
    """Tell verify_svc (at commit) to reload its trust list."""
    await conn.execute("NOTIFY trust_list")
