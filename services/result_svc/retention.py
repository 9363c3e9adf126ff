"""result_svc's retention steps: erasing persons, deleting old audit_log rows (docs/retention.md).

A person is erased once their last activity — the person row's last registration (`updated_at`), any of
their samples' changes, any result version recorded or withdrawn — is older than the personal-data
period. Erasing sets every sealed column and every keyed hash of the person to NULL, and the lookup and
registration hashes of all their samples: nothing left can find the person, or be opened into their name.
The rows stay (with province and district codes), so results, certificates, the feed and the statistics
keep what they count.

The batch follows intake's lock order (services/result_svc/repository.py: samples before persons) and
never waits for a lock (SKIP LOCKED): a person one of whose samples or whose row a call holds is left for
the next pass. After locking it checks the person again with a fresh snapshot, so a registration or result
that committed meanwhile keeps the person. A registration that arrives while the batch holds the person
waits, then finds no person with its key (the hash is gone) and creates a new one: the citizen starts
afresh. A result recorded for a sample of a person erased a moment before is published without a
certificate (services/publish_svc/relay.py): it is a result for a sample taken more than the period ago.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import NamedTuple

import asyncpg

from services.common.retention import BatchDone, RetentionStep

# The person had no activity since the cutoff ($1): no registration, sample change or result version.
_DUE = """
p.erased_at IS NULL AND p.updated_at < $1
AND NOT EXISTS (SELECT 1 FROM samples s WHERE s.person_id = p.id AND s.updated_at >= $1)
AND NOT EXISTS (
    SELECT 1 FROM samples s JOIN results r ON r.sample_id = s.id
    WHERE s.person_id = p.id AND (r.recorded_at >= $1 OR r.withdrawn_at >= $1)
)"""


class PersonKey(NamedTuple):
    """Where a batch stopped in persons_retention's order."""

    updated_at: datetime
    id: uuid.UUID


async def erase_persons(conn: asyncpg.Connection, cutoff: datetime, limit: int, after: object | None) -> BatchDone:
    """Erase the due persons among the next `limit` not erased whose row is older than `cutoff`, in
    (updated_at, id) order after `after`. A window of plain index order, then the activity check on those
    ids alone: one query doing both lets the planner, which sees that half the table may be due, scan all of
    persons and samples for every batch (make bench-retention measured seconds per batch at 400,000 persons)."""
    start = after if isinstance(after, PersonKey) else None
    window = await conn.fetch(
        """SELECT id, updated_at FROM persons
           WHERE erased_at IS NULL AND updated_at < $1
             AND ($2::timestamptz IS NULL OR (updated_at, id) > ($2, $3::uuid))
           ORDER BY updated_at, id LIMIT $4""",
        cutoff,
        start.updated_at if start else None,
        start.id if start else None,
        limit,
    )
    if not window:
        return BatchDone(0)
    resume = PersonKey(window[-1]["updated_at"], window[-1]["id"])
    candidates = [
        r["id"]
        for r in await conn.fetch(
            f"SELECT p.id FROM persons p WHERE p.id = ANY($2::uuid[]) AND {_DUE}", cutoff, [r["id"] for r in window]
        )
    ]
    if not candidates:
        return BatchDone(0, resume)
    # Their samples first (intake's order), never waiting: a person with a sample someone holds is skipped.
    held = await conn.fetch(
        """SELECT s.id, s.person_id FROM samples s WHERE s.person_id = ANY($1::uuid[])
           ORDER BY s.id FOR UPDATE SKIP LOCKED""",
        candidates,
    )
    samples = await conn.fetch(
        "SELECT person_id, count(*) AS n FROM samples WHERE person_id = ANY($1::uuid[]) GROUP BY person_id", candidates
    )
    locked = Counter(r["person_id"] for r in held)
    with_samples = {r["person_id"]: r["n"] for r in samples}
    whole = [p for p in candidates if locked[p] == with_samples.get(p, 0)]
    # Then the persons, checked again under their lock with this statement's (fresh) snapshot.
    erased = await conn.fetch(
        f"""UPDATE persons p
            SET person_key_hash = NULL, identity_hash = NULL, phone_hash = NULL, dob_hash = NULL,
                identity_enc = NULL, full_name_enc = NULL, family_name_enc = NULL, given_name_enc = NULL,
                date_of_birth_enc = NULL, phone_enc = NULL, erased_at = now()
            FROM (SELECT p.id FROM persons p WHERE p.id = ANY($2::uuid[]) AND {_DUE}
                  ORDER BY p.id FOR UPDATE OF p SKIP LOCKED) due
            WHERE p.id = due.id
            RETURNING p.id""",
        cutoff,
        whole,
    )
    ids = [r["id"] for r in erased]
    if ids:
        await conn.execute(
            """UPDATE samples SET registration_hash = NULL, lookup_identity_hash = NULL, lookup_phone_hash = NULL,
                      lookup_dob_hash = NULL
               WHERE person_id = ANY($1::uuid[])""",
            ids,
        )
    return BatchDone(len(ids), resume)


async def delete_audit_log(conn: asyncpg.Connection, cutoff: datetime, limit: int, _after: object) -> BatchDone:
    """Delete up to `limit` audit_log rows written before `cutoff` (appended only: nothing to lock)."""
    deleted = await conn.execute(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
        cutoff,
        limit,
    )
    return BatchDone(int(deleted.split()[-1]))


STEPS = (
    RetentionStep("persons", "erased", lambda policy: policy.personal_data, erase_persons),
    RetentionStep("audit_log", "deleted", lambda policy: policy.audit, delete_audit_log),
)
