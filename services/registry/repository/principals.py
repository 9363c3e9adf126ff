"""SQL of services.registry.principals: organisations, partners, checkpoint devices, operators, credentials."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.common.auth import PrincipalKind
from services.registry.page_keys import CreatedPageKey

TABLE = {
    PrincipalKind.ORGANISATION: "organisations",
    PrincipalKind.PARTNER: "partners",
    PrincipalKind.CHECKPOINT_DEVICE: "checkpoint_devices",
    PrincipalKind.OPERATOR: "operators",
}
# Sort order of each principal list (the last column is the unique tie-breaker).
ORDER = {
    PrincipalKind.ORGANISATION: ("name", "id"),
    PrincipalKind.PARTNER: ("name", "id"),
    PrincipalKind.CHECKPOINT_DEVICE: ("province_code", "name", "id"),
    PrincipalKind.OPERATOR: ("name", "id"),
}


# --- principals ------------------------------------------------------------------------------------


async def insert_organisation(
    conn: asyncpg.Connection, org_id: uuid.UUID, name: str, kind: str, province_code: str
) -> None:
    await conn.execute(
        "INSERT INTO organisations (id, name, kind, province_code) VALUES ($1, $2, $3, $4)",
        org_id,
        name,
        kind,
        province_code,
    )


async def insert_partner(
    conn: asyncpg.Connection, partner_id: uuid.UUID, name: str, personal_data_access: bool
) -> None:
    await conn.execute(
        "INSERT INTO partners (id, name, personal_data_access) VALUES ($1, $2, $3)",
        partner_id,
        name,
        personal_data_access,
    )


async def insert_partner_cursor(conn: asyncpg.Connection, partner_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO partner_cursors (partner_id) VALUES ($1)", partner_id)


async def insert_checkpoint_device(
    conn: asyncpg.Connection, device_id: uuid.UUID, name: str, province_code: str
) -> None:
    await conn.execute(
        "INSERT INTO checkpoint_devices (id, name, province_code) VALUES ($1, $2, $3)",
        device_id,
        name,
        province_code,
    )


async def upsert_operator(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """The id of operator `name`, inserted if new (a no-op update makes RETURNING give an existing id)."""
    return await conn.fetchval(
        """INSERT INTO operators (id, name) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        uuid.uuid4(),
        name,
    )


async def operator_id(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM operators WHERE name = $1", name)


async def principal(conn: asyncpg.Connection, kind: PrincipalKind, principal_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {TABLE[kind]} WHERE id = $1", principal_id)


async def list_principals(
    conn: asyncpg.Connection,
    kind: PrincipalKind,
    limit: int,
    after_sort_values: Sequence[str] = (),
    after_id: uuid.UUID | None = None,
    *,
    org_kind: str | None = None,
    province_code: str | None = None,
) -> list[asyncpg.Record]:
    """Principals of one kind in ORDER, after the row whose sort key is (*after_sort_values, after_id)."""
    order = ORDER[kind]
    where: list[str] = []
    args: list[object] = []
    if org_kind:
        args.append(org_kind)
        where.append(f"kind = ${len(args)}")
    if province_code:
        args.append(province_code)
        where.append(f"province_code = ${len(args)}")
    if after_id is not None:
        start = len(args)
        args.extend(after_sort_values)
        args.append(after_id)
        placeholders = ", ".join(f"${start + i + 1}" for i in range(len(order)))
        where.append(f"({', '.join(order)}) > ({placeholders})")
    args.append(limit)
    sql = (
        f"SELECT * FROM {TABLE[kind]}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {', '.join(order)} LIMIT ${len(args)}"
    )
    return await conn.fetch(sql, *args)


# --- credentials -----------------------------------------------------------------------------------


async def insert_credential(
    conn: asyncpg.Connection,
    *,
    credential_id: uuid.UUID,
    kind: str,
    secret_sha256: bytes,
    principal_kind: str,
    principal_id: uuid.UUID,
    role: str,
    label: str,
    expires_at: datetime | None,
) -> None:
    """A TOKEN (`secret_sha256` of the token) or a CLIENT_CERTIFICATE (the SHA-256 of its DER)."""
    await conn.execute(
        """INSERT INTO credentials (id, kind, secret_sha256, principal_kind, principal_id, role, label,
                                  expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        credential_id,
        kind,
        secret_sha256,
        principal_kind,
        principal_id,
        role,
        label,
        expires_at,
    )


# The columns of services.registry.principals.Credential, in its field order.
_CREDENTIAL_COLUMNS = """
    c.id::text, c.kind, c.principal_kind, c.principal_id::text, COALESCE(op.name, '') AS principal_name, c.role,
    c.label, c.created_at, c.expires_at, c.revoked_at, c.revocation_reason,
    CASE WHEN c.kind = 'CLIENT_CERTIFICATE' THEN c.secret_sha256 END AS fingerprint
    FROM credentials c LEFT JOIN operators op ON c.principal_kind = 'OPERATOR' AND op.id = c.principal_id"""


async def credential(conn: asyncpg.Connection, credential_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_CREDENTIAL_COLUMNS} WHERE c.id = $1", credential_id)


async def list_credentials(
    conn: asyncpg.Connection,
    principal_kind: str | None,
    principal_id: uuid.UUID | None,
    include_revoked: bool,
    limit: int,
    after: CreatedPageKey | None,
) -> list[asyncpg.Record]:
    """Newest first, then id, after the `after` row."""
    return await conn.fetch(
        f"""SELECT {_CREDENTIAL_COLUMNS}
            WHERE ($1::text IS NULL OR c.principal_kind = $1) AND ($2::uuid IS NULL OR c.principal_id = $2)
              AND ($3 OR c.revoked_at IS NULL)
              AND ($4::timestamptz IS NULL OR (c.created_at, c.id) < ($4, $5::uuid))
            ORDER BY c.created_at DESC, c.id DESC LIMIT $6""",
        principal_kind,
        principal_id,
        include_revoked,
        after.created_at if after else None,
        after.id if after else None,
        limit,
    )


async def revoke_credential(conn: asyncpg.Connection, credential_id: uuid.UUID, reason: str) -> uuid.UUID | None:
    """Revoke, keeping an earlier revocation's time and reason; None when there is no such credential."""
    return await conn.fetchval(
        """UPDATE credentials SET revoked_at = COALESCE(revoked_at, now()),
                  revocation_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revocation_reason END
           WHERE id = $1 RETURNING id""",
        credential_id,
        reason,
    )
