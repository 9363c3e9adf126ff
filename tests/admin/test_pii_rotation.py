"""Rotating the personal-data key (issue 14, part 5): `pii-keys status` and `pii-keys reencrypt`.

Real result_svc and publish_svc seal persons, certificates and feed events under key A over gRPC; the
CLI, run as a real process with PII_KEYS="B,A", re-seals everything under B (interrupted once, then
resumed), while the services run with the same ring; services started with B alone then still read every
person, QR code and feed event. The concurrency tests run the rotation in-process against a row a
"service" transaction holds or rewrites.
"""

import asyncio
import base64
import json
import secrets
import subprocess
import uuid

import asyncpg

from services.admin import repository as repo
from services.admin import rotation
from services.common.auth import Role
from services.common.pii import PiiCipher
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from tests.admin.cli_runner import json_lines, run_admin
from tests.conftest import bearer, make_principal
from tests.publish_svc.conftest import running_platform
from tests.result_svc.helpers import person


def new_key(key_id: str) -> str:
    return f"{key_id}:" + base64.b64encode(secrets.token_bytes(32)).decode()


def cipher(keys: str, pepper: str) -> PiiCipher:
    ring = {}
    for part in keys.split(","):
        key_id, _, b64 = part.partition(":")
        ring[key_id] = base64.b64decode(b64)
    return PiiCipher(ring, base64.b64decode(pepper))


def pii_keys(database_url: str, keys: str | None, pepper: str | None, *args: str) -> subprocess.CompletedProcess:
    return run_admin(database_url, {"PII_KEYS": keys, "PII_PEPPER": pepper}, "pii-keys", *args)


lines = json_lines


def key_ids(status: dict) -> dict[str, dict[str, int]]:
    return {c["column"]: c["key_ids"] for c in status["columns"]}


async def test_reencrypt_lets_the_old_key_go(own_database):
    url, _ = own_database
    key_a, key_b, pepper = new_key("A"), new_key("B"), base64.b64encode(secrets.token_bytes(32)).decode()

    # 1. Data sealed under A by the services (persons at intake, certificates and feed events by the relay).
    async with running_platform(url, PII_KEYS=key_a, PII_PEPPER=pepper) as platform:
        bluezone = await make_principal(url, Role.PARTNER, personal_data_access=True)
        await platform.release(4, start=9700)
        before = await platform.collect(bluezone["token"], 1, 4)
    assert all(e.person.full_name and e.certificate.qr.startswith("HC1:") for e in before)

    status = lines(pii_keys(url, None, None, "status", "--current-key-id", "B"))[-1]
    sealed = key_ids(status)
    for column in ("persons.full_name_enc", "persons.date_of_birth_enc", "certificates.qr_enc"):
        assert sealed[column] == {"A": 4}, sealed
    assert sealed["feed_events.payload_enc"] == {"A": 8}  # four registrations ("result pending"), four results
    assert status["old_key_ids"] == ["A"] and status["old_values"] > 12

    # 2. Services rolled out with "B,A"; the re-encryption runs beside them, online.
    ring = f"{key_b},{key_a}"
    async with running_platform(url, PII_KEYS=ring, PII_PEPPER=pepper) as platform:
        # A first run stopped after two one-row batches (as a crash or a Ctrl-C would): it loses nothing.
        first = lines(pii_keys(url, ring, pepper, "reencrypt", "--batch-size", "1", "--max-batches", "2"))
        assert [line["event"] for line in first] == ["batch", "batch", "stopped"]
        assert first[-1]["stopped"] == "max_batches" and first[-1]["reencrypted"] > 0
        partial = first[-1]["status"]
        assert partial["old_key_ids"] == ["A"] and 0 < partial["old_values"] < status["old_values"]
        assert key_ids(partial)["persons.full_name_enc"] == {"A": 2, "B": 2}

        # Meanwhile the services keep working: a new release is sealed under B.
        await platform.release(1, start=9710)
        bluezone2 = await make_principal(url, Role.PARTNER, personal_data_access=True)
        assert len(await platform.collect(bluezone2["token"], 1, 5)) == 5

        # The next run resumes with whatever still uses A and finishes.
        rest = lines(pii_keys(url, ring, pepper, "reencrypt", "--batch-size", "3"))
        assert rest[-1]["event"] == "done" and rest[-1]["failed"] == []
        final = rest[-1]["status"]
        assert final["old_key_ids"] == [] and final["old_values"] == 0
        assert first[-1]["reencrypted"] + rest[-1]["reencrypted"] == status["old_values"]
        for column, ids in key_ids(final).items():
            assert set(ids) <= {"B"}, (column, ids)
        assert key_ids(final)["feed_events.payload_enc"] == {"B": 10}  # five registrations, five results

        # Idempotent: a third run finds nothing to do.
        again = lines(pii_keys(url, ring, pepper, "reencrypt"))
        assert len(again) == 1 and (again[0]["event"], again[0]["reencrypted"], again[0]["batches"]) == ("done", 0, 0)

    # 3. Key A removed: services holding B alone read every feed event, person and QR code.
    async with running_platform(url, PII_KEYS=key_b, PII_PEPPER=pepper) as platform:
        reader = await make_principal(url, Role.PARTNER, personal_data_access=True)
        after = await platform.collect(reader["token"], 1, 5)
        assert [(e.person, e.certificate.qr) for e in after[:4]] == [(e.person, e.certificate.qr) for e in before]
        found = await platform.publish.GetCitizenResults(
            ppb.GetCitizenResultsRequest(identity=person(9700).identity, date_of_birth="1985-03-14"),
            metadata=bearer(reader["token"]),
        )
        mine = next(e for e in before if e.person.identity.number == person(9700).identity.number)
        assert [(r.person, r.certificate.qr) for r in found.results] == [(mine.person, mine.certificate.qr)]
        status_b = lines(pii_keys(url, key_b, pepper, "status"))[-1]
        assert status_b["current_key_id"] == "B" and status_b["old_values"] == 0


async def test_reencrypt_refuses_without_the_old_key(own_database):
    url, _ = own_database
    key_a, key_b, pepper = new_key("A"), new_key("B"), base64.b64encode(secrets.token_bytes(32)).decode()
    person_id = await insert_person(url, cipher(key_a, pepper), "Nguyễn Văn A")

    missing = pii_keys(url, key_b, pepper, "reencrypt")  # the operator forgot A in the ring
    assert missing.returncode == 1 and "A" in missing.stderr and "lacks" in missing.stderr
    no_keys = pii_keys(url, None, None, "reencrypt")
    assert no_keys.returncode == 1 and "PII_KEYS" in no_keys.stderr
    assert pii_keys(url, key_b, pepper, "reencrypt", "--batch-size", "0").returncode == 2
    status = lines(pii_keys(url, key_b, pepper, "status"))[-1]
    assert status["old_key_ids"] == ["A"] and key_ids(status)["persons.full_name_enc"] == {"A": 1}
    assert await full_name(url, cipher(key_a, pepper), person_id) == "Nguyễn Văn A"  # untouched


async def insert_person(url: str, pii: PiiCipher, name: str, *, phone_from_name: bool = False) -> uuid.UUID:
    """A persons row sealed with `pii` (as intake writes it; hashes are random)."""
    conn = await asyncpg.connect(url)
    try:
        person_id = uuid.uuid4()
        full = pii.seal("person.full_name", name)
        await conn.execute(
            """INSERT INTO persons (id, person_key_hash, identity_hash, dob_hash, full_name_enc, date_of_birth_enc,
                                    phone_enc, province_code)
               VALUES ($1, $2, $3, $4, $5, $6, $7, '24')""",
            person_id,
            secrets.token_bytes(32),
            secrets.token_bytes(32),
            secrets.token_bytes(32),
            full,
            pii.seal("person.date_of_birth", "1990-01-01"),
            full if phone_from_name else None,  # a ciphertext copied into another column: it must not open
        )
        return person_id
    finally:
        await conn.close()


async def full_name(url: str, pii: PiiCipher, person_id: uuid.UUID) -> str:
    conn = await asyncpg.connect(url)
    try:
        return pii.open(
            "person.full_name", await conn.fetchval("SELECT full_name_enc FROM persons WHERE id = $1", person_id)
        )
    finally:
        await conn.close()


async def test_a_row_held_by_a_service_is_skipped_then_rotated_with_its_new_value(own_database):
    url, _ = own_database
    key_a, key_b, pepper = new_key("A"), new_key("B"), base64.b64encode(secrets.token_bytes(32)).decode()
    old, both, new_only = cipher(key_a, pepper), cipher(f"{key_b},{key_a}", pepper), cipher(key_b, pepper)
    ids = [await insert_person(url, old, f"Người {i}") for i in range(5)]

    service = await asyncpg.connect(url)
    conn = await asyncpg.connect(url)
    try:
        # A service transaction has rewritten ids[2] (under A: a replica not yet rolled out) and not committed.
        tx = service.transaction()
        await tx.start()
        await service.execute(
            "UPDATE persons SET full_name_enc = $2 WHERE id = $1", ids[2], old.seal("person.full_name", "Tên Mới")
        )
        # The rotation does not wait for it: it skips the row and finishes everything else.
        progress = await asyncio.wait_for(rotation.reencrypt(conn, both, batch_size=2), 10)
        assert progress.stopped is None and progress.failed == [] and progress.reencrypted == 8  # 4 rows × 2
        held = await rotation.status(conn, "B")
        assert held.old_values == 2 and {c.column: c.key_ids for c in held.columns}["persons.full_name_enc"] == {
            "A": 1,
            "B": 4,
        }
        await tx.commit()

        # The next run rotates it, with the service's value, not the one the first run saw.
        progress = await rotation.reencrypt(conn, both, batch_size=2)
        assert progress.reencrypted == 2 and (await rotation.status(conn, "B")).old_values == 0
        assert await full_name(url, new_only, ids[2]) == "Tên Mới"
        assert [await full_name(url, new_only, i) for i in ids[:2]] == ["Người 0", "Người 1"]
    finally:
        await conn.close()
        await service.close()


async def test_a_write_racing_a_batch_is_not_lost(own_database, monkeypatch):
    url, _ = own_database
    key_a, key_b, pepper = new_key("A"), new_key("B"), base64.b64encode(secrets.token_bytes(32)).decode()
    old, both, new_only = cipher(key_a, pepper), cipher(f"{key_b},{key_a}", pepper), cipher(key_b, pepper)
    person_id = await insert_person(url, old, "Trần Thị B")

    service = await asyncpg.connect(url)
    conn = await asyncpg.connect(url)
    racing: list[asyncio.Task] = []
    lock_rows = repo.lock_stale_sealed_rows

    async def read_then_race(*args, **kwargs):
        rows = await lock_rows(*args, **kwargs)
        if rows and not racing:  # a service writes the row after the batch read it, before it writes
            write = service.execute(
                "UPDATE persons SET full_name_enc = $2 WHERE id = $1", person_id, both.seal("person.full_name", "Mới")
            )
            racing.append(asyncio.ensure_future(write))
            await asyncio.sleep(0.3)
            assert not racing[0].done()  # it waits for the batch's row lock
        return rows

    monkeypatch.setattr(repo, "lock_stale_sealed_rows", read_then_race)
    try:
        progress = await rotation.reencrypt(conn, both)
        await asyncio.wait_for(racing[0], 10)  # then writes its value over the batch's
        assert progress.reencrypted == 2
        assert await full_name(url, new_only, person_id) == "Mới"  # the service's write, not the stale name

        # Compare-and-set: a value that changed since it was read is not replaced.
        persons = rotation.SEALED[0]
        current = await conn.fetchval("SELECT full_name_enc FROM persons WHERE id = $1", person_id)
        stale = old.seal("person.full_name", "Trần Thị B")
        resealed = both.seal("person.full_name", "Trần Thị B")
        pairs = [(stale, resealed) if c == "full_name_enc" else (None, None) for c, _ in persons.columns]
        assert await repo.replace_sealed_values(conn, persons, [(person_id, pairs)]) == 0
        assert await conn.fetchval("SELECT full_name_enc FROM persons WHERE id = $1", person_id) == current
    finally:
        await conn.close()
        await service.close()


async def test_a_value_that_does_not_open_is_reported_and_left(own_database):
    url, _ = own_database
    key_a, key_b, pepper = new_key("A"), new_key("B"), base64.b64encode(secrets.token_bytes(32)).decode()
    moved = await insert_person(url, cipher(key_a, pepper), "Lê Văn C", phone_from_name=True)
    await insert_person(url, cipher(key_a, pepper), "Phạm Thị D")

    proc = pii_keys(url, f"{key_b},{key_a}", pepper, "reencrypt")
    assert proc.returncode == 1 and "did not open" in proc.stderr
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["failed"] == [
        {"column": "persons.phone_enc", "key": str(moved), "error": "ciphertext failed authentication"}
    ]
    assert final["reencrypted"] == 4 and key_ids(final["status"])["persons.phone_enc"] == {"A": 1}
