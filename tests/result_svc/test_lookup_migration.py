"""migrations/0007_registration_lookups.sql: existing samples take their person's lookup hashes, and a
writer from before it (a pod still running during a rolling update) still stores findable samples."""

import os
import shutil
import uuid

import asyncpg
import pytest

from services.common import migrate

LOOKUPS = 7


async def insert_person(conn: asyncpg.Connection, identity: bytes | None, phone: bytes | None, dob: bytes) -> uuid.UUID:
    person_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO persons (id, person_key_hash, identity_hash, phone_hash, dob_hash, full_name_enc,
                                date_of_birth_enc, province_code)
           VALUES ($1, $2, $3, $4, $5, '\\x00', '\\x00', '24')""",
        person_id,
        os.urandom(32),
        identity,
        phone,
        dob,
    )
    return person_id


async def insert_sample(conn: asyncpg.Connection, org: uuid.UUID, lab: uuid.UUID, person_id: uuid.UUID) -> uuid.UUID:
    """A sample as a writer from before 0007 inserts it: without lookup columns."""
    sample_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at, sampling_site,
                                registration_hash)
           VALUES ($1, $2, $3, $4, $5, 'NAAT', now(), 'site', '\\x00')""",
        sample_id,
        org,
        uuid.uuid4().hex,
        person_id,
        lab,
    )
    return sample_id


async def lookup_columns(conn: asyncpg.Connection, sample_id: uuid.UUID) -> tuple:
    row = await conn.fetchrow(
        "SELECT lookup_identity_hash, lookup_phone_hash, lookup_dob_hash FROM samples WHERE id = $1", sample_id
    )
    return tuple(None if v is None else bytes(v) for v in row)


async def test_backfill_and_samples_from_writers_before_the_migration(empty_db, tmp_path):
    for m in migrate.discover():
        if m.version < LOOKUPS:
            shutil.copy(migrate.MIGRATIONS_DIR / f"{m.version:04d}_{m.name}.sql", tmp_path)
    await migrate.apply(empty_db, tmp_path)
    conn = await asyncpg.connect(empty_db)
    try:
        org, lab = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO organisations (id, name, kind, province_code) VALUES ($1, 'unit', 'SAMPLING_UNIT', '24'), "
            "($2, 'lab', 'LAB', '24')",
            org,
            lab,
        )
        with_id = (os.urandom(32), os.urandom(32), os.urandom(32))
        phone_only = (None, os.urandom(32), os.urandom(32))
        old = [await insert_sample(conn, org, lab, await insert_person(conn, *h)) for h in (with_id, phone_only)]

        assert LOOKUPS in await migrate.apply(empty_db)

        # Existing samples: their person's hashes (the latest registration's: the best old data allows).
        assert [await lookup_columns(conn, s) for s in old] == [with_id, phone_only]
        # A writer from before the migration: the person's hashes its registration has just written.
        person_id = await insert_person(conn, *phone_only[:2], os.urandom(32))
        row = await conn.fetchrow("SELECT identity_hash, phone_hash, dob_hash FROM persons WHERE id = $1", person_id)
        late = await insert_sample(conn, org, lab, person_id)
        assert await lookup_columns(conn, late) == tuple(None if v is None else bytes(v) for v in row)
        # A current writer's own factors are kept, whatever the person's row holds.
        own = (None, os.urandom(32), os.urandom(32))
        sample_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at,
                                    sampling_site, registration_hash, lookup_identity_hash, lookup_phone_hash,
                                    lookup_dob_hash)
               VALUES ($1, $2, 'B-own', $3, $4, 'NAAT', now(), 'site', '\\x00', $5, $6, $7)""",
            sample_id,
            org,
            person_id,
            lab,
            *own,
        )
        assert await lookup_columns(conn, sample_id) == own
        # A sample is always findable by something.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE samples SET lookup_identity_hash = NULL, lookup_phone_hash = NULL WHERE id = $1", sample_id
            )
    finally:
        await conn.close()
