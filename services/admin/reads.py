"""Who read a person's results: the operator's answer to "who looked up my result?" (issue 14).

The person is found by their identity document, hashed exactly as intake stored it
(services.common.identity), or by their internal id; their results are every result version of their
samples; the answer is every `personal_data_reads` row naming one of those results. A citizen lookup
that found nothing names no result and so is not listed here: the audit keeps no lookup factor that
could tie it to a person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.admin import repository as repo
from services.common.identity import identity_hash
from services.common.pii import PiiCipher


@dataclass(frozen=True, slots=True)
class IdentityDocument:
    doc_type: str  # CITIZEN_ID, OLD_ID or PASSPORT
    country: str  # ignored for Vietnamese documents (always VN)
    number: str


async def reads_of_person(
    conn: asyncpg.Connection,
    pii: PiiCipher | None,
    document: IdentityDocument | None,
    person_id: uuid.UUID | None,
    limit: int,
) -> list[repo.ReadRow]:
    """The audited reads of the person's results and pending samples, oldest first (empty: unknown person or
    never read)."""
    person_ids = [person_id] if person_id is not None else []
    if document is not None:
        if pii is None:
            raise ValueError("an identity document is hashed with the personal-data pepper")
        key = identity_hash(pii, document.doc_type, document.country, document.number)
        person_ids += await repo.persons_by_identity_hash(conn, key)
    if not person_ids:
        return []
    result_ids = await repo.results_of_persons(conn, person_ids)
    sample_ids = await repo.samples_of_persons(conn, person_ids)  # "result pending" events name samples
    return await repo.reads_of_results(conn, result_ids, sample_ids, limit) if result_ids or sample_ids else []
