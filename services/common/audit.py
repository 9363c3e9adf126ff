"""The audit trail: one row per mutation, written in the mutation's own transaction.

Rows name the principal, the action, the object (type and id) and the client's request id. Details
carry ids, counts and codes only, never personal data.
"""

from __future__ import annotations

import asyncpg

from services.common.auth import Principal


async def record(
    conn: asyncpg.Connection,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: str,
    request_id: str = "",
    details: dict | None = None,
) -> None:
    """`principal=None` means the operator CLI acting with direct database access."""
    await conn.execute(
        """INSERT INTO audit_log (principal_kind, principal_id, role, action, object_type, object_id, request_id,
                                  details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        principal.kind.value if principal else "OPERATOR_CLI",
        principal.id if principal else None,
        principal.role.value if principal else "OPERATOR",
        action,
        object_type,
        object_id,
        request_id,
        details or {},
    )


async def record_many(
    conn: asyncpg.Connection,
    principal: Principal,
    action: str,
    object_type: str,
    object_ids: list[str],
    request_id: str = "",
) -> None:
    """One audit row per object of a batch mutation, in a single statement."""
    if not object_ids:
        return
    await conn.execute(
        """INSERT INTO audit_log (principal_kind, principal_id, role, action, object_type, object_id, request_id)
           SELECT $1, $2, $3, $4, $5, object_id, $6 FROM unnest($7::text[]) AS object_id""",
        principal.kind.value,
        principal.id,
        principal.role.value,
        action,
        object_type,
        request_id,
        object_ids,
    )
