"""SQL of the admin room's own reads: who read a person's results (the read audit, issue 14).

Everything else admin does goes through services.registry; this is the operator's view of
`personal_data_reads`, which publish_svc writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class ReadRow:
    """One audited read of a person's results: when, who, why, which of the person's results."""

    id: int
    at: datetime
    principal_kind: str
    principal_id: uuid.UUID
    principal_name: str | None  # None: the principal no longer exists
    purpose: str
    result_ids: list[uuid.UUID]  # only the person's own results (a feed batch holds other people's too)
    detail: dict[str, object]


async def persons_by_identity_hash(conn: asyncpg.Connection, identity_hash: bytes) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM persons WHERE identity_hash = $1 ORDER BY id", identity_hash)
    return [r["id"] for r in rows]


async def results_of_persons(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Every result version (superseded ones too) of the persons' samples."""
    rows = await conn.fetch(
        """SELECT r.id FROM results r JOIN samples s ON s.id = r.sample_id
           WHERE s.person_id = ANY($1::uuid[]) ORDER BY r.id""",
        person_ids,
    )
    return [r["id"] for r in rows]


async def reads_of_results(conn: asyncpg.Connection, result_ids: list[uuid.UUID], limit: int) -> list[ReadRow]:
    """Audit rows naming any of `result_ids` (GIN index on result_ids), oldest first."""
    rows = await conn.fetch(
        """SELECT a.id, a.at, a.principal_kind, a.principal_id, a.purpose, a.detail,
                  ARRAY(SELECT x FROM unnest(a.result_ids) AS x WHERE x = ANY($1::uuid[])) AS result_ids,
                  CASE a.principal_kind
                      WHEN 'PARTNER' THEN (SELECT name FROM partners WHERE id = a.principal_id)
                      WHEN 'ORGANISATION' THEN (SELECT name FROM organisations WHERE id = a.principal_id)
                      WHEN 'CHECKPOINT_DEVICE' THEN (SELECT name FROM checkpoint_devices WHERE id = a.principal_id)
                      WHEN 'OPERATOR' THEN (SELECT name FROM operators WHERE id = a.principal_id)
                  END AS principal_name
           FROM personal_data_reads a
           WHERE a.result_ids && $1::uuid[]
           ORDER BY a.at, a.id LIMIT $2""",
        result_ids,
        limit,
    )
    return [
        ReadRow(
            r["id"],
            r["at"],
            r["principal_kind"],
            r["principal_id"],
            r["principal_name"],
            r["purpose"],
            list(r["result_ids"]),
            r["detail"],
        )
        for r in rows
    ]
