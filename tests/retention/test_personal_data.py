"""Erasing persons (result_svc's retention step) over real gRPC and the real database: who is erased, what
is left, what the services answer afterwards, and the races with intake."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.admin import rotation
from services.common.config import parse_keyring, parse_secret_bytes
from services.common.db import connect
from services.common.pii import PiiCipher
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.result_svc.retention import erase_persons
from tests.conftest import RESULT_DB_ROLE, bearer
from tests.publish_svc.conftest import new_partner, running_platform
from tests.result_svc.helpers import ago, person, result, rid, sample, unique
from tests.retention.conftest import (
    POLICY,
    backdate_samples,
    person_number,
    person_row,
    run_result_retention,
    sample_rows,
)
from tools.servers import dsn_with_user

PERSONAL_COLUMNS = (
    "person_key_hash",
    "identity_hash",
    "phone_hash",
    "dob_hash",
    "identity_enc",
    "full_name_enc",
    "family_name_enc",
    "given_name_enc",
    "date_of_birth_enc",
    "phone_enc",
)
SAMPLE_HASHES = ("registration_hash", "lookup_identity_hash", "lookup_phone_hash", "lookup_dob_hash")


async def get_sample(platform, barcode: str) -> rpb.Sample:
    reply = await platform.results.GetSample(
        rpb.GetSampleRequest(sample_barcode=barcode), metadata=bearer(platform.unit["token"])
    )
    return reply.sample


async def register(platform, n: int, barcode: str, **overrides) -> rpb.SampleRegistrationResult:
    reply = await platform.results.RegisterSamples(
        rpb.RegisterSamplesRequest(request_id=rid(), samples=[sample(barcode, platform.lab["id"], n, **overrides)]),
        metadata=bearer(platform.unit["token"]),
    )
    return reply.results[0]


async def test_erases_the_persons_without_activity_in_the_period_and_nothing_else(platform, database_url):
    n_old, n_recent = person_number(), person_number()
    old = await platform.release(1, start=n_old)
    recent = await platform.release(1, start=n_recent)
    [old_id] = await backdate_samples(database_url, old)
    [recent_id] = await backdate_samples(database_url, recent, age=POLICY.personal_data - timedelta(days=1))
    recent_before = await person_row(database_url, recent_id)
    recent_samples_before = await sample_rows(database_url, recent_id)
    old_before = await person_row(database_url, old_id)

    done = await run_result_retention(database_url)

    assert done["persons"] >= 1
    erased = await person_row(database_url, old_id)
    assert all(erased[c] is None for c in PERSONAL_COLUMNS)
    assert erased["erased_at"] is not None
    # What statistics and the foreign keys need stays.
    assert (erased["province_code"], erased["district_code"]) == (old_before["province_code"], "213")
    for row in await sample_rows(database_url, old_id):
        assert all(row[c] is None for c in SAMPLE_HASHES)
        assert row["barcode"] == old[0] and row["state"] == "RESULTED"
    # A person 180 days minus a day old is untouched, byte for byte.
    assert await person_row(database_url, recent_id) == recent_before
    assert await sample_rows(database_url, recent_id) == recent_samples_before

    # GetSample still answers, with the result and only the area codes of the person.
    shown = await get_sample(platform, old[0])
    assert shown.person.personal_data_erased and not shown.person.full_name and not shown.person.date_of_birth
    assert not shown.person.HasField("identity") and not shown.person.phone
    assert shown.person.province_code == "24" and shown.person.district_code == "213"
    assert [r.outcome for r in shown.results] == [t.OUTCOME_NEGATIVE]
    kept = await get_sample(platform, recent[0])
    assert kept.person.full_name == "Nguyễn Văn An" and not kept.person.personal_data_erased

    # A second pass finds nothing more of these.
    await run_result_retention(database_url)
    assert await person_row(database_url, old_id) == erased


@pytest.mark.parametrize(
    "recent_activity",
    [
        "UPDATE persons SET updated_at = now() WHERE id = $1",  # registered again (the upsert)
        "UPDATE samples SET updated_at = now() WHERE person_id = $1",  # a sample changed state
        "UPDATE results r SET recorded_at = now() FROM samples s WHERE s.id = r.sample_id AND s.person_id = $1",
        "UPDATE results r SET withdrawn_at = now() FROM samples s WHERE s.id = r.sample_id AND s.person_id = $1",
    ],
    ids=["registration", "sample", "result-recorded", "result-withdrawn"],
)
async def test_any_activity_within_the_period_keeps_the_person(platform, database_url, recent_activity):
    kept_n, control_n = person_number(), person_number()
    kept = await platform.release(1, start=kept_n)
    control = await platform.release(1, start=control_n)
    [kept_id] = await backdate_samples(database_url, kept)
    [control_id] = await backdate_samples(database_url, control)
    conn = await connect(database_url)
    try:
        await conn.execute(recent_activity, kept_id)
    finally:
        await conn.close()

    await run_result_retention(database_url)

    assert (await person_row(database_url, kept_id))["erased_at"] is None
    assert (await person_row(database_url, control_id))["erased_at"] is not None  # the same pass erased the other


async def test_after_erasure_lookups_find_nothing_and_the_citizen_starts_afresh(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    n = person_number()
    lookup = ppb.GetCitizenResultsRequest(identity=person(n).identity, date_of_birth="1985-03-14")
    start = await platform.head() + 1
    [old] = await platform.release(1, start=n)
    await platform.collect(partner["token"], start, 1)
    assert len((await platform.publish.GetCitizenResults(lookup, metadata=auth)).results) == 1
    [old_person] = await backdate_samples(database_url, [old])

    await run_result_retention(database_url)

    assert await platform.publish.GetCitizenResults(lookup, metadata=auth) == ppb.GetCitizenResultsResponse()
    # The same person registers again: a new person row, found by lookups with the new sample only.
    fresh = unique("F")
    assert (await register(platform, n, fresh)).status == rpb.REGISTRATION_STATUS_CREATED
    [new_row] = [r for r in await sample_rows_by_barcode(database_url, fresh)]
    assert new_row["person_id"] != old_person
    assert (await person_row(database_url, new_row["person_id"]))["full_name_enc"] is not None
    assert (await person_row(database_url, old_person))["erased_at"] is not None
    found = await platform.publish.GetCitizenResults(lookup, metadata=auth)
    assert [r.pending_sample.sample_barcode for r in found.results] == [fresh]
    # The erased sample's barcode again, with the very same data: a conflict, never a replay of erased data.
    again = await register(platform, n, old)
    assert again.status == rpb.REGISTRATION_STATUS_REJECTED
    assert [(v.field, v.reason) for v in again.violations] == [("samples[0].sample_barcode", "SAMPLE_BARCODE_CONFLICT")]


async def test_a_retest_of_an_erased_sample_is_refused_precisely(platform, database_url):
    n = person_number()
    [original] = await platform.release(1, start=n, outcome=t.OUTCOME_INCONCLUSIVE)
    assert (await get_sample(platform, original)).state == t.SAMPLE_STATE_RESAMPLE_REQUIRED  # retestable
    await backdate_samples(database_url, [original])
    await run_result_retention(database_url)

    retest = await register(platform, n, unique("R"), retest_of_sample_barcode=original)

    assert retest.status == rpb.REGISTRATION_STATUS_REJECTED
    [violation] = retest.violations
    assert (violation.field, violation.reason) == ("samples[0].retest_of_sample_barcode", "RETEST_PERSON_MISMATCH")
    assert "erased" in violation.description


async def test_personal_data_erased_is_output_only(platform):
    answer = await register(platform, person_number(), unique("F"), person=person(1, personal_data_erased=True))
    assert answer.status == rpb.REGISTRATION_STATUS_REJECTED
    assert [(v.field, v.reason) for v in answer.violations] == [
        ("samples[0].person.personal_data_erased", "FIELD_NOT_ALLOWED")
    ]


async def test_a_result_recorded_after_erasure_is_published_without_person_or_certificate(
    platform, database_url, caplog
):
    """A sample taken more than the period ago whose result arrives only now (its person already erased):
    the relay decides not to certify it (a warning saying why), rather than failing to sign a nameless
    certificate (an ERROR and a failed-certificate count)."""
    caplog.set_level(logging.WARNING, logger="covidtest.relay")
    partner = await new_partner(database_url, personal_data_access=True)
    n, barcode = person_number(), unique("L")
    assert (await register(platform, n, barcode)).status == rpb.REGISTRATION_STATUS_CREATED
    await backdate_samples(database_url, [barcode])
    await run_result_retention(database_url)
    start = await platform.head() + 1

    recorded = await platform.results.RecordResults(
        rpb.RecordResultsRequest(request_id=rid(), results=[result(sample_barcode=barcode, tested_at=ago(minutes=5))]),
        metadata=bearer(platform.lab["token"]),
    )

    assert recorded.rejected_count == 0, recorded
    [event] = await platform.collect(partner["token"], start, 1)
    assert event.kind == t.RESULT_EVENT_KIND_RELEASED and event.result.sample_barcode == barcode
    assert event.person.personal_data_erased and not event.person.full_name
    assert not event.HasField("certificate")
    relay_lines = [r for r in caplog.records if r.name == "covidtest.relay"]
    assert any("personal data was erased" in r.getMessage() for r in relay_lines)
    assert not [r for r in relay_lines if r.levelno >= logging.ERROR]


async def sample_rows_by_barcode(database_url: str, barcode: str) -> list[asyncpg.Record]:
    conn = await connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM samples WHERE barcode = $1", barcode)
    finally:
        await conn.close()


async def waiting_for_a_lock(database_url: str, timeout_s: float = 10) -> None:
    """Until some backend of this database waits for a row lock (polled, with a deadline)."""
    database = database_url.rsplit("/", 1)[1]
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", database
        ):
            assert time.monotonic() < deadline, "no call ever waited for the eraser's lock"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_registration_racing_the_eraser_creates_a_new_person(platform, database_url):
    """The eraser holds the person; the person registers again meanwhile: the registration waits, then
    finds no person with its key (erased) and creates a new one with the new data. Nothing is lost and
    the new data is not erased."""
    n = person_number()
    [old] = await platform.release(1, start=n)
    [old_person] = await backdate_samples(database_url, [old])
    eraser = await connect(dsn_with_user(database_url, RESULT_DB_ROLE))
    try:
        transaction = eraser.transaction()
        await transaction.start()
        cutoff = datetime.now(UTC) - POLICY.personal_data
        assert (await erase_persons(eraser, cutoff, 1000, None)).changed >= 1
        fresh = unique("F")
        registering = asyncio.create_task(register(platform, n, fresh))
        await waiting_for_a_lock(database_url)
        assert not registering.done()
        await transaction.commit()
    finally:
        await eraser.close()

    assert (await registering).status == rpb.REGISTRATION_STATUS_CREATED
    [row] = await sample_rows_by_barcode(database_url, fresh)
    assert row["person_id"] != old_person and row["lookup_dob_hash"] is not None
    assert (await person_row(database_url, row["person_id"]))["full_name_enc"] is not None
    assert (await get_sample(platform, fresh)).person.full_name == "Nguyễn Văn An"
    assert (await person_row(database_url, old_person))["erased_at"] is not None


@pytest.mark.parametrize(
    "held",
    [
        "SELECT 1 FROM persons WHERE id = $1 FOR UPDATE",  # a registration upserting the person
        "SELECT 1 FROM samples WHERE person_id = $1 FOR UPDATE",  # a lab recording the sample's result
    ],
    ids=["person", "sample"],
)
async def test_the_eraser_skips_what_a_call_holds_and_never_waits(platform, database_url, held):
    n = person_number()
    [barcode] = await platform.release(1, start=n)
    [person_id] = await backdate_samples(database_url, [barcode])
    call = await connect(database_url)
    try:
        async with call.transaction():
            await call.execute(held, person_id)
            # The pass finishes while the call holds its lock (it would hang here if it waited).
            await asyncio.wait_for(run_result_retention(database_url), 30)
            assert (await person_row(database_url, person_id))["erased_at"] is None
    finally:
        await call.close()
    await run_result_retention(database_url)  # the call is over: the next pass erases the person
    assert (await person_row(database_url, person_id))["erased_at"] is not None


async def test_the_table_refuses_a_half_erased_person(platform, database_url):
    [barcode] = await platform.release(1, start=person_number())
    [person_id] = await backdate_samples(database_url, [barcode])
    conn = await connect(database_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE persons SET full_name_enc = NULL WHERE id = $1", person_id)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE samples SET lookup_dob_hash = NULL WHERE person_id = $1", person_id)
    finally:
        await conn.close()


async def test_key_rotation_passes_over_erased_persons_and_never_writes_them_back(own_database):
    database_url, _pool = own_database  # its own: the rotation re-seals every value of the database
    async with running_platform(database_url, RETENTION_ENABLED="false") as platform:
        [kept_barcode] = await platform.release(1, start=person_number())
        [erased_barcode] = await platform.release(1, start=person_number())
        [kept_id] = [r["person_id"] for r in await sample_rows_by_barcode(database_url, kept_barcode)]
        [erased_id] = await backdate_samples(database_url, [erased_barcode])
        await run_result_retention(database_url)
        erased = await person_row(database_url, erased_id)
        new_ring = {"k-new": os.urandom(32), **parse_keyring(platform.env["PII_KEYS"])}
        both = PiiCipher(new_ring, parse_secret_bytes(platform.env["PII_PEPPER"]))
        conn = await connect(database_url)
        try:
            progress = await asyncio.wait_for(rotation.reencrypt(conn, both), 60)
            status = await rotation.status(conn, both.active_key_id)
        finally:
            await conn.close()

        assert not progress.failed and progress.reencrypted > 0
        assert status.old_values == 0  # every value left is under the new key; the erased ones are absent
        assert await person_row(database_url, erased_id) == erased
        kept = await person_row(database_url, kept_id)
        assert both.open("person.full_name", kept["full_name_enc"]) == "Nguyễn Văn An"


async def test_old_persons_kept_by_recent_activity_never_hold_up_those_behind_them(platform, database_url):
    """The eraser walks persons oldest first, a batch of POLICY.batch_size (3) at a time: more than a batch of
    old persons kept by a recent result must not end the pass before a due person behind them."""
    blockers = await platform.release(POLICY.batch_size + 1, start=person_number())
    [due_barcode] = await platform.release(1, start=person_number())
    blocker_ids = await backdate_samples(database_url, blockers, age=timedelta(days=400))
    [due_id] = await backdate_samples(database_url, [due_barcode], age=timedelta(days=190))
    conn = await connect(database_url)
    try:  # each blocker's result was recorded again just now (an amendment, say): not due
        await conn.execute(
            "UPDATE results r SET recorded_at = now() FROM samples s"
            " WHERE s.id = r.sample_id AND s.person_id = ANY($1)",
            blocker_ids,
        )
    finally:
        await conn.close()

    await run_result_retention(database_url)

    assert (await person_row(database_url, due_id))["erased_at"] is not None
    for blocker in blocker_ids:
        assert (await person_row(database_url, blocker))["erased_at"] is None
