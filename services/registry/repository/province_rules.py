"""SQL of services.registry.province_rules: versioned province rules."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg


async def rule_id_of(
    conn: asyncpg.Connection, province_code: str, entry_type: str, test_type: str | None
) -> str | None:
    """The id that versions of the rule for (province, entry type, test type) share, if one was set."""
    return await conn.fetchval(
        """SELECT rule_id FROM province_rules WHERE province_code = $1 AND entry_type = $2
             AND test_type IS NOT DISTINCT FROM $3 LIMIT 1""",
        province_code,
        entry_type,
        test_type,
    )


async def insert_rule(
    conn: asyncpg.Connection,
    *,
    rule_id: str,
    province_code: str,
    entry_type: str,
    test_type: str | None,
    validity_seconds: int | None,
    accepted_outcomes: list[str],
    require_complete_series: bool,
    min_days_since_last_dose: int | None,
    max_days_since_last_dose: int | None,
    min_days_since_positive: int | None,
    max_days_since_positive: int | None,
    disabled: bool,
    effective_from: datetime | None,
    description: str,
    created_by: uuid.UUID | None,
) -> asyncpg.Record:
    """A new version of a rule (the database numbers it); `effective_from` None means now."""
    row = await conn.fetchrow(
        """INSERT INTO province_rules (rule_id, province_code, entry_type, test_type, validity_seconds,
                                       accepted_outcomes,
                                       require_complete_series, min_days_since_last_dose, max_days_since_last_dose,
                                       min_days_since_positive, max_days_since_positive, disabled, effective_from,
                                       description, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, now()), $14, $15) RETURNING *""",
        rule_id,
        province_code,
        entry_type,
        test_type,
        validity_seconds,
        accepted_outcomes,
        require_complete_series,
        min_days_since_last_dose,
        max_days_since_last_dose,
        min_days_since_positive,
        max_days_since_positive,
        disabled,
        effective_from,
        description,
        created_by,
    )
    assert row is not None  # INSERT ... RETURNING returns the row it inserted
    return row


async def notify_province_rules(conn: asyncpg.Connection) -> None:
    """Tell verify_svc (at commit) to reload its rules."""
    await conn.execute("NOTIFY province_rules")


async def list_rules(
    conn: asyncpg.Connection, province: str | None, history: bool, limit: int, after_version: int | None
) -> list[asyncpg.Record]:
    """Newest version first; without `history` only each rule's latest version."""
    return await conn.fetch(
        """SELECT * FROM province_rules p
           WHERE ($1::text IS NULL OR province_code = $1)
             AND ($2 OR version = (SELECT max(version) FROM province_rules q WHERE q.rule_id = p.rule_id))
             AND ($3::bigint IS NULL OR version < $3)
           ORDER BY version DESC LIMIT $4""",
        province,
        history,
        after_version,
        limit,
    )
