"""SQL of the admin room's own reads: who read a person's results (the read audit, issue 14), and the
certificate an operator prints (issue 18), with its audit row.

Everything else admin does goes through services.registry; this is the operator's view of
`personal_data_reads`, which publish_svc writes (and the operator CLI, for a printed certificate).
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


async def samples_of_persons(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Every sample of the persons (a feed page audits the pending ones it delivered by sample id)."""
    rows = await conn.fetch("SELECT id FROM samples WHERE person_id = ANY($1::uuid[]) ORDER BY id", person_ids)
    return [r["id"] for r in rows]


async def reads_of_results(
    conn: asyncpg.Connection, result_ids: list[uuid.UUID], sample_ids: list[uuid.UUID], limit: int
) -> list[ReadRow]:
    """Audit rows naming any of `result_ids` (GIN index on result_ids), or any of `sample_ids` among the
    pending samples a feed page delivered (GIN index on detail->'pending_sample_ids'), oldest first."""
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
           WHERE a.result_ids && $1::uuid[] OR (a.detail -> 'pending_sample_ids') ?| $3::text[]
           ORDER BY a.at, a.id LIMIT $2""",
        result_ids,
        limit,
        [str(s) for s in sample_ids],
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


# --- A printed certificate (issue 18): services.admin.documents -----------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateRow:
    uvci: str
    status: str  # VALID or REVOKED
    qr_enc: bytes | None  # the sealed HC1 text (PiiCipher purpose "certificate.qr"); None once erased
    expires_at: datetime
    result_id: uuid.UUID


async def certificate_by_uvci(conn: asyncpg.Connection, uvci: str) -> CertificateRow | None:
    row = await conn.fetchrow(
        "SELECT uvci, status, qr_enc, expires_at, result_id FROM certificates WHERE uvci = $1", uvci
    )
    if row is None:
        return None
    qr_enc = bytes(row["qr_enc"]) if row["qr_enc"] is not None else None
    return CertificateRow(row["uvci"], row["status"], qr_enc, row["expires_at"], row["result_id"])


async def record_document_read(
    conn: asyncpg.Connection, operator_id: uuid.UUID, result_id: uuid.UUID, detail: dict[str, object]
) -> None:
    """The read-audit row of a certificate an operator printed (as publish_svc writes a partner's)."""
    await conn.execute(
        """INSERT INTO personal_data_reads (principal_kind, principal_id, purpose, result_ids, detail)
           VALUES ('OPERATOR', $1, 'DOCUMENT_RENDER', $2::uuid[], $3)""",
        operator_id,
        [result_id],
        detail,
    )


# --- Personal-data key rotation (issue 14, part 5): the SQL of services.admin.rotation ---------------
#
# A sealed value's header is: version byte, key-id length byte, key id (services/common/pii.py). Postgres
# reads the key id from it without the key: `substring(col FROM 3 FOR get_byte(col, 1))`. Table and
# column names come from rotation.SEALED (constants), never from input.


@dataclass(frozen=True, slots=True)
class SealedTable:
    """A table with personal-data columns sealed by PiiCipher: (column, purpose) pairs, keyed by `key`."""

    table: str
    key: str  # primary key column, walked in order (keyset pagination)
    key_type: str  # its SQL type, for the first page's NULL
    columns: tuple[tuple[str, str], ...]


def _key_id_sql(column: str) -> str:
    return f"substring({column} FROM 3 FOR get_byte({column}, 1))"


async def sealed_key_id_counts(conn: asyncpg.Connection, table: SealedTable) -> list[tuple[str, bytes, int]]:
    """(column, key id, values) of every non-NULL sealed value of `table`, in one scan of it."""
    pairs = ", ".join(f"('{column}', {_key_id_sql(column)})" for column, _ in table.columns)
    rows = await conn.fetch(
        f"""SELECT v.col, v.key_id, count(*) AS n
            FROM {table.table}, LATERAL (VALUES {pairs}) AS v(col, key_id)
            WHERE v.key_id IS NOT NULL
            GROUP BY v.col, v.key_id ORDER BY v.col, v.key_id"""
    )
    return [(r["col"], bytes(r["key_id"]), r["n"]) for r in rows]


async def lock_stale_sealed_rows(
    conn: asyncpg.Connection, table: SealedTable, after: object | None, current_key_id: bytes, limit: int
) -> list[asyncpg.Record]:
    """The next `limit` rows after key `after` (None: from the start) with a value sealed under another key
    than `current_key_id`, locked FOR NO KEY UPDATE (the lock the UPDATE itself takes: inserts referencing
    the row by foreign key are not held up); rows another transaction is writing are skipped, not waited for.
    Each record has `k` (the primary key) and the table's sealed columns."""
    stale = " OR ".join(f"({c} IS NOT NULL AND {_key_id_sql(c)} <> $2)" for c, _ in table.columns)
    columns = ", ".join(c for c, _ in table.columns)
    return await conn.fetch(
        f"""SELECT {table.key} AS k, {columns} FROM {table.table}
            WHERE ($1::{table.key_type} IS NULL OR {table.key} > $1) AND ({stale})
            ORDER BY {table.key} LIMIT $3
            FOR NO KEY UPDATE SKIP LOCKED""",
        after,
        current_key_id,
        limit,
    )


async def replace_sealed_values(
    conn: asyncpg.Connection, table: SealedTable, rows: list[tuple[object, list[tuple[bytes | None, bytes | None]]]]
) -> int:
    """Write the re-sealed values: `rows` holds (key, [(old, new) per column of table.columns]); new None
    leaves the column alone. A column is replaced only if it still holds `old` (compare-and-set), so a value
    rewritten since it was read is kept. One statement for the batch; returns how many values it replaced."""
    n = len(table.columns)
    arrays: list[list[object]] = [[key for key, _ in rows]]
    for i in range(n):
        arrays.append([pairs[i][0] for _, pairs in rows])
        arrays.append([pairs[i][1] for _, pairs in rows])
    names = ", ".join(f"o{i}, n{i}" for i in range(n))
    casts = ", ".join(f"${2 * i + 2}::bytea[], ${2 * i + 3}::bytea[]" for i in range(n))
    sets = ", ".join(
        f"{c} = CASE WHEN v.n{i} IS NOT NULL AND t.{c} = v.o{i} THEN v.n{i} ELSE t.{c} END"
        for i, (c, _) in enumerate(table.columns)
    )
    replaced = " + ".join(f"(v.n{i} IS NOT NULL AND t.{c} = v.n{i})::int" for i, (c, _) in enumerate(table.columns))
    done = await conn.fetch(
        f"""UPDATE {table.table} AS t SET {sets}
            FROM unnest($1::{table.key_type}[], {casts}) AS v(k, {names})
            WHERE t.{table.key} = v.k
            RETURNING {replaced} AS replaced""",
        *arrays,
    )
    return sum(r["replaced"] for r in done)
