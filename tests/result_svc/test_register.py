"""RegisterSamples: every validation rule, per-item outcomes, idempotency, concurrent duplicates."""

import asyncio

import asyncpg
import grpc
import pytest

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2
from tests.grpc_errors import error_reason, violations
from tests.result_svc.helpers import ago, person, rid, sample, unique

NAAT, RAT = testing_pb2.TEST_TYPE_NAAT, testing_pb2.TEST_TYPE_RAPID_ANTIGEN
CITIZEN, OLD, PASSPORT = (
    person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID,
    person_pb2.IDENTITY_DOCUMENT_TYPE_OLD_ID,
    person_pb2.IDENTITY_DOCUMENT_TYPE_PASSPORT,
)


def ident(doc_type, number, country=""):
    return person_pb2.PersonIdentity(type=doc_type, number=number, country=country)


# Each case: how to spoil a valid item, and the (field suffix, reason) it must be reported with.
INVALID_ITEMS = [
    ("bad barcode", dict(sample_barcode="has space"), "sample_barcode", "FIELD_FORMAT_INVALID"),
    ("no person", dict(person=None), "person", "FIELD_REQUIRED"),
    (
        "citizen id of 11 digits",
        dict(person=person(identity=ident(CITIZEN, "12345678901"))),
        "person.identity.number",
        "FIELD_FORMAT_INVALID",
    ),
    (
        "old id of 12 digits",
        dict(person=person(identity=ident(OLD, "123456789012"))),
        "person.identity.number",
        "FIELD_FORMAT_INVALID",
    ),
    (
        "citizen id of another country",
        dict(person=person(identity=ident(CITIZEN, "001085012345", "KR"))),
        "person.identity.country",
        "FIELD_NOT_ALLOWED",
    ),
    (
        "passport without country",
        dict(person=person(identity=ident(PASSPORT, "M1234567"))),
        "person.identity.country",
        "FIELD_REQUIRED",
    ),
    (
        "passport in lower case",
        dict(person=person(identity=ident(PASSPORT, "m1234567", "KR"))),
        "person.identity.number",
        "FIELD_FORMAT_INVALID",
    ),
    ("neither identity nor phone", dict(person=person(identity=None, phone="")), "person.identity", "FIELD_REQUIRED"),
    ("bad phone", dict(person=person(phone="12345")), "person.phone", "FIELD_FORMAT_INVALID"),
    ("empty name", dict(person=person(full_name="  ")), "person.full_name", "FIELD_REQUIRED"),
    ("control character in name", dict(person=person(full_name="An\x07")), "person.full_name", "FIELD_FORMAT_INVALID"),
    (
        "birth date in the future",
        dict(person=person(date_of_birth="2999-01-01")),
        "person.date_of_birth",
        "FIELD_OUT_OF_RANGE",
    ),
    (
        "birth date not a date",
        dict(person=person(date_of_birth="1985-02-30")),
        "person.date_of_birth",
        "FIELD_FORMAT_INVALID",
    ),
    ("birth date missing", dict(person=person(date_of_birth="")), "person.date_of_birth", "FIELD_REQUIRED"),
    ("province of 3 digits", dict(person=person(province_code="024")), "person.province_code", "FIELD_FORMAT_INVALID"),
    ("district of 2 digits", dict(person=person(district_code="21")), "person.district_code", "FIELD_FORMAT_INVALID"),
    ("no test type", dict(test_type=testing_pb2.TEST_TYPE_UNSPECIFIED), "test_type", "FIELD_REQUIRED"),
    ("antigen test without device", dict(test_type=RAT), "rat_device_id", "FIELD_REQUIRED"),
    (
        "antigen device not in value set",
        dict(test_type=RAT, rat_device_id="999999"),
        "rat_device_id",
        "VALUE_NOT_IN_VALUE_SET",
    ),
    ("device on a NAAT", dict(rat_device_id="1232"), "rat_device_id", "FIELD_NOT_ALLOWED"),
    # A day ahead, not minutes: this list is built when the suite is collected, which may be many minutes
    # before the test runs (10 minutes ahead at collection was within the 5-minute skew by then).
    ("collected in the future", dict(collected_at=ago(days=-1)), "collected_at", "TIME_IN_FUTURE"),
    ("collected 15 days ago", dict(collected_at=ago(days=15)), "collected_at", "TIME_TOO_OLD"),
    ("no collection time", dict(collected_at=None), "collected_at", "FIELD_REQUIRED"),
    ("no sampling site", dict(sampling_site=""), "sampling_site", "FIELD_REQUIRED"),
    ("lab id not a uuid", dict(lab_org_id="lab-1"), "lab_org_id", "FIELD_FORMAT_INVALID"),
    ("unknown lab", dict(lab_org_id="00000000-0000-4000-8000-000000000000"), "lab_org_id", "LAB_NOT_FOUND"),
    (
        "pooled antigen test",
        dict(test_type=RAT, rat_device_id="1232", pool_barcode="P-1"),
        "pool_barcode",
        "POOL_NOT_ALLOWED",
    ),
    (
        "retest of an unknown sample",
        dict(retest_of_sample_barcode="NO-SUCH"),
        "retest_of_sample_barcode",
        "RETEST_OF_NOT_FOUND",
    ),
]


def spoiled(lab_id: str, n: int, changes: dict) -> pb.SampleRegistration:
    item = sample(unique("S"), lab_id, n)
    for field, value in changes.items():
        if value is None:
            item.ClearField(field)
        elif hasattr(value, "CopyFrom"):
            getattr(item, field).CopyFrom(value)
        else:
            setattr(item, field, value)
    return item


async def test_every_validation_rule_is_reported_per_item_with_its_index(stub, sampler, lab):
    items = [spoiled(lab.id, i, changes) for i, (_, changes, _, _) in enumerate(INVALID_ITEMS)]
    good = sample(unique("OK"), lab.id, 999)
    items.append(good)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=sampler.auth
    )
    assert reply.rejected_count == len(INVALID_ITEMS) and reply.created_count == 1
    for i, (name, _, field, reason) in enumerate(INVALID_ITEMS):
        item = reply.results[i]
        assert item.index == i and item.status == pb.REGISTRATION_STATUS_REJECTED, name
        assert (f"samples[{i}].{field}", reason) in [(v.field, v.reason) for v in item.violations], (
            f"{name}: {[(v.field, v.reason) for v in item.violations]}"
        )
        assert item.sample_id == ""
    assert reply.results[-1].status == pb.REGISTRATION_STATUS_CREATED and reply.results[-1].sample_id


async def test_one_item_with_several_problems_lists_them_all(stub, sampler, lab):
    bad = sample("bad barcode", lab.id, person=person(phone="1", province_code="x"), sampling_site="")
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[bad]), metadata=sampler.auth
    )
    fields = {v.field for v in reply.results[0].violations}
    assert {
        "samples[0].sample_barcode",
        "samples[0].person.phone",
        "samples[0].person.province_code",
        "samples[0].sampling_site",
    } <= fields


@pytest.mark.parametrize("count,reason", [(0, "FIELD_REQUIRED"), (1001, "TOO_MANY_ITEMS")])
async def test_batch_size_is_checked_as_a_whole(stub, sampler, lab, count, reason):
    items = [sample(f"B{i}", lab.id, i) for i in range(count)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=sampler.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == [("samples", reason)]


async def test_request_id_is_required(stub, sampler, lab):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterSamples(
            pb.RegisterSamplesRequest(samples=[sample(unique("S"), lab.id)]), metadata=sampler.auth
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_duplicate_barcode_in_one_request_rejects_the_second(stub, sampler, lab):
    barcode = unique("DUP")
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(barcode, lab.id, 1), sample(barcode, lab.id, 2)]),
        metadata=sampler.auth,
    )
    assert reply.results[0].status == pb.REGISTRATION_STATUS_CREATED
    assert [v.reason for v in reply.results[1].violations] == ["DUPLICATE_IN_REQUEST"]


async def count(db, sql: str, *args) -> int:
    return await db.fetchval(sql, *args)


async def test_same_request_id_and_body_replays_without_new_rows(stub, sampler, lab, db):
    request = pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("R"), lab.id, i) for i in range(3)])
    first = await stub.RegisterSamples(request, metadata=sampler.auth)
    before = await count(db, "SELECT count(*) FROM samples")
    again = await stub.RegisterSamples(request, metadata=sampler.auth)
    assert again == first
    assert await count(db, "SELECT count(*) FROM samples") == before

    changed = pb.RegisterSamplesRequest(request_id=request.request_id, samples=[sample(unique("R"), lab.id)])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterSamples(changed, metadata=sampler.auth)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_same_data_under_a_new_request_id_is_already_registered(stub, sampler, lab, db):
    item = sample(unique("N"), lab.id, 7)
    first = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    again = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    assert again.results[0].status == pb.REGISTRATION_STATUS_ALREADY_REGISTERED
    assert again.results[0].sample_id == first.results[0].sample_id
    item.sampling_site = "Another site"
    conflict = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    assert [v.reason for v in conflict.results[0].violations] == ["SAMPLE_BARCODE_CONFLICT"]


async def test_concurrent_calls_with_one_request_id_write_one_set_of_rows(stub, sampler, lab, db):
    request = pb.RegisterSamplesRequest(
        request_id=rid(), samples=[sample(unique("C"), lab.id, 100 + i) for i in range(20)]
    )
    replies = await asyncio.gather(*(stub.RegisterSamples(request, metadata=sampler.auth) for _ in range(6)))
    assert all(r == replies[0] for r in replies)
    assert replies[0].created_count == 20
    barcodes = [s.sample_barcode for s in request.samples]
    assert await count(db, "SELECT count(*) FROM samples WHERE barcode = ANY($1::text[])", barcodes) == 20
    assert await count(db, "SELECT count(*) FROM audit_log WHERE request_id = $1", request.request_id) == 20


async def test_concurrent_calls_with_different_request_ids_do_not_duplicate_a_barcode(stub, sampler, lab, db):
    item = sample(unique("CC"), lab.id, 55)
    replies = await asyncio.gather(
        *(
            stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth)
            for _ in range(6)
        )
    )
    statuses = sorted(r.results[0].status for r in replies)
    assert statuses.count(pb.REGISTRATION_STATUS_CREATED) == 1
    assert set(statuses) <= {pb.REGISTRATION_STATUS_CREATED, pb.REGISTRATION_STATUS_ALREADY_REGISTERED}
    assert len({r.results[0].sample_id for r in replies}) == 1
    registered = await count(
        db, "SELECT count(*) FROM outbox WHERE sample_id = $1::uuid AND kind = 'SAMPLE_REGISTERED'",
        replies[0].results[0].sample_id,
    )  # fmt: skip
    assert registered == 1  # one "result pending" event, however many calls raced to register it


async def test_each_created_sample_appends_one_pending_event_and_a_replay_none(stub, sampler, lab, db):
    """Registration is "result pending" for the feed: one SAMPLE_REGISTERED outbox event per sample created,
    with no result; a replayed call, a sample already registered and a refused item add none."""
    items = [sample(unique("P"), lab.id, 300 + i) for i in range(3)]
    refused = sample("has space", lab.id)
    request = pb.RegisterSamplesRequest(request_id=rid(), samples=[*items, refused])
    first = await stub.RegisterSamples(request, metadata=sampler.auth)
    created = [r.sample_id for r in first.results if r.status == pb.REGISTRATION_STATUS_CREATED]
    assert len(created) == 3
    await stub.RegisterSamples(request, metadata=sampler.auth)  # the same call again: a replay
    await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=sampler.auth)
    rows = await db.fetch(
        "SELECT kind, result_id, sample_id::text, payload FROM outbox WHERE sample_id = ANY($1::uuid[]) ORDER BY id",
        created,
    )
    assert [(r["kind"], r["result_id"]) for r in rows] == [("SAMPLE_REGISTERED", None)] * 3
    assert [r["sample_id"] for r in rows] == created
    assert [r["payload"] for r in rows] == [{"sample_id": i} for i in created]  # ids only, nothing personal


async def test_pool_takes_at_most_ten_members_of_one_lab_and_test_type(stub, sampler, lab, other_lab):
    pool = unique("POOL")
    items = [sample(unique("M"), lab.id, 200 + i, pool_barcode=pool) for i in range(11)]
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=sampler.auth
    )
    assert reply.created_count == 10
    assert [v.reason for v in reply.results[10].violations] == ["POOL_FULL"]
    other = sample(unique("M"), other_lab.id, 300, pool_barcode=unique("POOL2"))
    mismatch = sample(unique("M"), lab.id, 301, pool_barcode=other.pool_barcode)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[other, mismatch]), metadata=sampler.auth
    )
    assert reply.results[0].status == pb.REGISTRATION_STATUS_CREATED
    assert [v.reason for v in reply.results[1].violations] == ["POOL_MISMATCH"]


async def test_personal_data_is_encrypted_at_rest_and_absent_from_audit(stub, sampler, lab, db, database_url):
    distinctive = person(4242, full_name="Hoàng Thị Đặc Biệt", phone="0987654321", date_of_birth="1961-07-09")
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("PII"), lab.id, person=distinctive)]),
        metadata=sampler.auth,
    )
    assert reply.created_count == 1
    conn = await asyncpg.connect(database_url)
    try:
        dump = await conn.fetchval(
            """SELECT string_agg(t::text, ' ') FROM (
                   SELECT p::text AS t FROM persons p UNION ALL SELECT s::text FROM samples s
                   UNION ALL SELECT a::text FROM audit_log a UNION ALL SELECT i::text FROM idempotency_keys i) x"""
        )
    finally:
        await conn.close()
    for secret in ("Đặc Biệt", "Dac Biet", "0987654321", "987654321", "1961-07-09", distinctive.identity.number):
        assert secret not in dump
    # and a hex dump of bytea columns does not contain the UTF-8 bytes either
    assert "Đặc Biệt".encode().hex() not in dump and b"0987654321".hex() not in dump


async def test_timestamp_outside_the_valid_range_is_a_field_violation_not_internal(stub, sampler, lab):
    from google.protobuf.timestamp_pb2 import Timestamp

    item = sample(unique("TS"), lab.id, 77)
    item.collected_at.CopyFrom(Timestamp(seconds=10**15))
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    assert [(v.field, v.reason) for v in reply.results[0].violations] == [
        ("samples[0].collected_at", "FIELD_OUT_OF_RANGE")
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListResults(pb.ListResultsRequest(start_time=Timestamp(seconds=1, nanos=-1)), metadata=sampler.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(err.value) == [
        ("start_time", "FIELD_OUT_OF_RANGE")
    ]


@pytest.mark.parametrize("key", [["not a time", "x"], ["2021-10-01T00:00:00+00:00", "not-a-uuid"], [1, 2, 3], [{}, []]])
async def test_crafted_page_token_is_page_token_invalid(stub, sampler, key):
    import base64
    import json

    from services.common.paging import _filters_digest

    filters = {
        "start": None,
        "end": None,
        "outcomes": [],
        "states": ["RELEASED", "RETEST_REQUIRED", "RESAMPLE_REQUIRED", "WITHDRAWN"],
        "role": "SAMPLER",
    }
    token = base64.urlsafe_b64encode(json.dumps({"k": key, "f": _filters_digest(filters)}).encode()).decode()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListResults(pb.ListResultsRequest(page_token=token), metadata=sampler.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(err.value) == "PAGE_TOKEN_INVALID"


async def test_a_refused_item_says_why_in_the_callers_language(stub, sampler, lab):
    """Per-item refusals inside an OK batch reply carry their reason's text too (google.rpc LocalizedMessage),
    Vietnamese unless the caller asks otherwise (accept-language), beside the English description."""
    texts = {}
    for header in ((), (("accept-language", "en-US,en;q=0.9"),), (("accept-language", "vi"),)):
        request = pb.RegisterSamplesRequest(request_id=rid(), samples=[sample("has space", lab.id)])
        reply = await stub.RegisterSamples(request, metadata=tuple(sampler.auth) + header)
        [violation] = reply.results[0].violations
        assert violation.reason == "FIELD_FORMAT_INVALID" and violation.description
        texts[header[0][1] if header else None] = violation.localized_message
    assert texts[None].locale == texts["vi"].locale == "vi-VN" and texts["en-US,en;q=0.9"].locale == "en-US"
    assert texts[None].message == texts["vi"].message != texts["en-US,en;q=0.9"].message
    assert not texts["vi"].message.isascii()  # Vietnamese, with its diacritics
