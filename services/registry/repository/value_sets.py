"""SQL of services.registry.value_sets: the imported versions of the DCC value sets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

# What the services read of a version (their database roles may read these columns only).
_SERVICE_COLUMNS = "name, version, value_set_date, set_values, content_sha256"


async def lock_versions(conn: asyncpg.Connection) -> None:
    """Until the transaction ends, no other import numbers a version (readers are not blocked)."""
    await conn.execute("LOCK TABLE value_sets IN SHARE ROW EXCLUSIVE MODE")


async def latest_versions(conn: asyncpg.Connection) -> dict[str, int]:
    """name → the highest version imported, for every set that has one."""
    rows = await conn.fetch("SELECT name, max(version) AS version FROM value_sets GROUP BY name")
    return {r["name"]: r["version"] for r in rows}


async def versions(conn: asyncpg.Connection, wanted: Sequence[tuple[str, int]]) -> list[asyncpg.Record]:
    """The stored versions named by (name, version), with their values."""
    if not wanted:
        return []
    names, numbers = zip(*wanted, strict=True)
    return await conn.fetch(
        f"""SELECT {_SERVICE_COLUMNS} FROM value_sets
            WHERE (name, version) IN (SELECT * FROM unnest($1::text[], $2::int[]))""",
        list(names),
        list(numbers),
    )


async def latest(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    """The current version of `name` (without its values), or None when none is imported."""
    return await conn.fetchrow(
        "SELECT name, version, content_sha256 FROM value_sets WHERE name = $1 ORDER BY version DESC LIMIT 1", name
    )


async def insert_version(
    conn: asyncpg.Connection,
    *,
    name: str,
    version: int,
    value_set_date: date,
    values: dict,
    content_sha256: bytes,
    source_file: str,
    imported_by: str,
) -> None:
    await conn.execute(
        """INSERT INTO value_sets (name, version, value_set_date, set_values, value_count, content_sha256,
                                   source_file, imported_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        name,
        version,
        value_set_date,
        values,
        len(values),
        content_sha256,
        source_file,
        imported_by,
    )


async def list_versions(conn: asyncpg.Connection, name: str | None) -> list[asyncpg.Record]:
    """Every imported version (of `name`, or of every set), by name then newest first, with how many of its
    values are active."""
    return await conn.fetch(
        """SELECT name, version, value_set_date, value_count, content_sha256, source_file, imported_by,
                  imported_at,
                  (SELECT count(*) FROM jsonb_each(set_values) v WHERE v.value -> 'active' = 'true'::jsonb)
                      AS active_count
           FROM value_sets WHERE ($1::text IS NULL OR name = $1) ORDER BY name, version DESC""",
        name,
    )


async def notify_value_sets(conn: asyncpg.Connection) -> None:
    """Tell result_svc and verify_svc (at commit) to reload the current value sets."""
    await conn.execute("NOTIFY value_sets")
