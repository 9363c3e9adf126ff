"""Verify over real gRPC with the real relay, Redis and Postgres: verdicts, fields, revocation, limits."""

import asyncio
import time
import zlib
from datetime import UTC, datetime, timedelta

import cbor2
import grpc
import pytest

from services.common.cache import create_client
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.hcert import codec
from services.hcert import keys as hkeys
from services.registry.certificate_status import StatusCache
from tests.conftest import REDIS_URL, bearer
from tests.grpc_errors import violations
from tests.result_svc.helpers import ago, rid, ts
from tests.verify_svc.conftest import amend_to_positive, released_certificate


async def verify(platform, qr: str, **kw) -> vpb.VerifyResponse:
    return await platform.verify.Verify(vpb.VerifyRequest(qr=qr, **kw), metadata=platform.device_auth)


async def test_released_certificate_is_valid_with_the_fields_an_officer_checks(platform):
    event = await released_certificate(platform, 100)
    answer = await verify(platform, event.certificate.qr)
    assert answer.verdict == v.VERDICT_VALID, answer.reason
    assert (answer.family_name, answer.given_name, answer.date_of_birth) == ("Nguyễn", "Văn An", "1985-03-14")
    assert answer.family_name_transliterated == "NGUYEN" and answer.entry_type == c.ENTRY_TYPE_TEST
    assert answer.test_type == t.TEST_TYPE_NAAT and answer.certificate_id == event.certificate.certificate_id
    assert answer.sample_collected_at.seconds == event.result.collected_at.seconds
    assert answer.valid_until.seconds == event.result.collected_at.seconds + 72 * 3600  # national default rule
    assert answer.issuer_country == "VN" and answer.rule_version >= 1 and answer.rule_id
    assert answer.status_source == v.STATUS_SOURCE_CACHE


async def test_amended_result_revokes_old_certificate_within_one_second(platform):
    event = await released_certificate(platform, 200)
    assert (await verify(platform, event.certificate.qr)).verdict == v.VERDICT_VALID
    await amend_to_positive(platform, event)
    amended_at = time.monotonic()
    while True:
        answer = await verify(platform, event.certificate.qr)
        if answer.verdict == v.VERDICT_REVOKED:
            break
        assert answer.verdict == v.VERDICT_VALID
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - amended_at
    assert elapsed < 1.0, f"revocation took {elapsed:.3f} s to reach verification"


async def test_positive_result_verifies_as_test_positive(platform):
    event = await released_certificate(platform, 300, outcome=t.OUTCOME_POSITIVE)
    assert (await verify(platform, event.certificate.qr)).verdict == v.VERDICT_TEST_POSITIVE


async def test_offline_scan_before_issue_is_not_yet_valid(platform):
    event = await released_certificate(platform, 400)
    earlier = await verify(platform, event.certificate.qr, scanned_at=ts(datetime.now(UTC) - timedelta(days=6)))
    assert earlier.verdict == v.VERDICT_NOT_YET_VALID  # scanned (offline) before the certificate existed


async def test_rapid_antigen_test_older_than_24_hours_is_expired_by_the_rule(platform):
    from tests.result_svc.helpers import result, sample, unique

    item = sample(
        unique("RAT"),
        platform.lab["id"],
        450,
        test_type=t.TEST_TYPE_RAPID_ANTIGEN,
        rat_device_id="1232",
        collected_at=ago(hours=30),
    )
    start = await platform.head() + 1
    await platform.results.RegisterSamples(
        rpb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=bearer(platform.unit["token"])
    )
    await platform.results.RecordResults(
        rpb.RecordResultsRequest(
            request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=item.sample_barcode)]
        ),
        metadata=bearer(platform.lab["token"]),
    )
    event = (await platform.collect(platform.partner["token"], start, 1))[0]
    answer = await verify(platform, event.certificate.qr)  # the certificate itself runs 72 h: the rule decides
    assert answer.verdict == v.VERDICT_EXPIRED and answer.test_type == t.TEST_TYPE_RAPID_ANTIGEN
    assert answer.valid_until.ToDatetime(tzinfo=UTC) == (
        item.collected_at.ToDatetime(tzinfo=UTC) + timedelta(hours=24)
    ).replace(microsecond=0)


@pytest.mark.parametrize(
    "qr, stage",
    [
        ("not a certificate", v.MALFORMED_STAGE_PREFIX),
        ("HC1:!!!!", v.MALFORMED_STAGE_BASE45),
        ("HC1:" + codec.b45encode(b"not zlib at all"), v.MALFORMED_STAGE_ZLIB),
        ("HC1:" + codec.b45encode(zlib.compress(b"\x01\x02\x03")), v.MALFORMED_STAGE_COSE),
    ],
)
async def test_garbage_is_malformed_at_the_failing_stage(platform, qr, stage):
    answer = await verify(platform, qr)
    assert answer.verdict == v.VERDICT_MALFORMED and answer.malformed_stage == stage
    assert answer.status_source == v.STATUS_SOURCE_UNCHECKED and not answer.family_name


async def test_unknown_issuer_and_forged_signature(platform):
    event = await released_certificate(platform, 500)
    stranger = hkeys.SigningKeyMaterial.generate("ES256")
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "X", "fnt": "X"},
        "dob": "1990",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP6464-4",
                "sc": "2021-10-01T08:00:00Z",
                "tr": "260415000",
                "tc": "Lab",
                "co": "VN",
                "is": "MoH",
                "ci": "URN:UVCI:01:VN:FORGED#0",
            }
        ],
    }
    now = int(time.time())
    foreign = codec.encode_hcert(dcc, signer=codec.Signer(stranger), issued_at=now, expires_at=now + 3600)
    assert (await verify(platform, foreign)).verdict == v.VERDICT_UNKNOWN_ISSUER
    # Same kid as our key, but signed by someone else: a forgery.
    cose = cbor2.loads(zlib.decompress(__import__("base45").b45decode(foreign[4:])))
    protected = cbor2.dumps({1: -7, 4: event.certificate.kid})
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cose.value[2], cose.value[3]]))
    answer = await verify(platform, "HC1:" + codec.b45encode(zlib.compress(forged)))
    assert answer.verdict == v.VERDICT_SIGNATURE_INVALID and not answer.family_name


async def test_input_limits(platform):
    for request, expected in (
        (vpb.VerifyRequest(qr="HC1:" + "A" * 5000), ("qr", "FIELD_OUT_OF_RANGE")),
        (vpb.VerifyRequest(qr=""), ("qr", "FIELD_REQUIRED")),
        (
            vpb.VerifyRequest(qr="HC1:X", scanned_at=ts(datetime.now(UTC) - timedelta(days=8))),
            ("scanned_at", "TIME_TOO_OLD"),
        ),
        (
            vpb.VerifyRequest(qr="HC1:X", scanned_at=ts(datetime.now(UTC) + timedelta(hours=1))),
            ("scanned_at", "TIME_IN_FUTURE"),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await platform.verify.Verify(request, metadata=platform.device_auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(err.value) == [expected]


async def test_batch_gives_the_same_verdict_per_scan(platform):
    event = await released_certificate(platform, 600)
    scans = [
        vpb.VerifyRequest(qr=event.certificate.qr),
        vpb.VerifyRequest(qr="garbage"),
        vpb.VerifyRequest(qr=event.certificate.qr),
    ]
    batch = await platform.verify.VerifyBatch(vpb.VerifyBatchRequest(scans=scans), metadata=platform.device_auth)
    singles = [await verify(platform, s.qr) for s in scans]
    assert (
        [r.verdict for r in batch.results]
        == [s.verdict for s in singles]
        == [v.VERDICT_VALID, v.VERDICT_MALFORMED, v.VERDICT_VALID]
    )


async def test_cache_miss_reads_postgres_and_refills_the_cache(platform):
    event = await released_certificate(platform, 700)
    client = create_client(REDIS_URL)
    try:
        cache = StatusCache(client, platform.redis_prefix)
        await client.delete(cache.key(event.certificate.certificate_id))
        first = await verify(platform, event.certificate.qr)
        assert first.verdict == v.VERDICT_VALID and first.status_source == v.STATUS_SOURCE_DATABASE
        deadline = time.monotonic() + 2
        while await cache.get(event.certificate.certificate_id) is None:
            assert time.monotonic() < deadline, "the miss did not refill the cache"
            await asyncio.sleep(0.01)
        assert (await verify(platform, event.certificate.qr)).status_source == v.STATUS_SOURCE_CACHE
    finally:
        await client.aclose()


async def test_rules_and_trust_list_for_offline_devices(platform):
    rules = await platform.verify.GetRules(vpb.GetRulesRequest(), metadata=platform.device_auth)
    assert rules.province_code == "24"
    defaults = {(r.province_code, r.test_type): r.validity.seconds for r in rules.rules}
    assert defaults[("00", t.TEST_TYPE_NAAT)] == 72 * 3600 and defaults[("00", t.TEST_TYPE_RAPID_ANTIGEN)] == 24 * 3600
    full = await platform.verify.GetTrustList(vpb.GetTrustListRequest(), metadata=platform.device_auth)
    assert full.full and platform.key.kid in {k.kid for k in full.added}
    nothing_new = await platform.verify.GetTrustList(
        vpb.GetTrustListRequest(since_version=full.version), metadata=platform.device_auth
    )
    assert not nothing_new.full and not nothing_new.added and not nothing_new.removed_sha256_fingerprints


async def test_only_checkpoints_may_verify(platform):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.verify.Verify(vpb.VerifyRequest(qr="HC1:X"), metadata=bearer(platform.partner["token"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_concurrent_misses_of_one_certificate_make_one_database_read(platform, database_url):
    """Single flight: 50 scans of a certificate missing from Redis at the same moment read Postgres once."""
    from services.verify_svc.status import StatusLookup

    event = await released_certificate(platform, 1000)
    client = create_client(REDIS_URL)
    cache = StatusCache(client, platform.redis_prefix)
    reads: list[list[str]] = []

    class Counting(StatusLookup):
        async def _read_many(self, certificate_ids):
            reads.append(list(certificate_ids))
            return await super()._read_many(certificate_ids)

    lookup = Counting(cache, database_url, 5.0, 2.0)
    try:
        await client.delete(cache.key(event.certificate.certificate_id))
        answers = await asyncio.gather(*(lookup.status(event.certificate.certificate_id) for _ in range(50)))
        assert {(a.status, a.source) for a in answers} == {("VALID", "DATABASE")}
        assert reads == [[event.certificate.certificate_id]]
        unknown = "URN:UVCI:01:VN:NOSUCHCERT#A"
        assert (await lookup.status(unknown)).status is None
        assert (await lookup.status(unknown)).status is None  # remembered as unknown: no second read
        assert reads[1:] == [[unknown]]
    finally:
        await lookup.close()
        await client.aclose()


async def test_scan_time_outside_the_valid_range_is_invalid_argument(platform):
    from google.protobuf.timestamp_pb2 import Timestamp

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.verify.VerifyBatch(
            vpb.VerifyBatchRequest(
                scans=[
                    vpb.VerifyRequest(qr="HC1:X"),
                    vpb.VerifyRequest(qr="HC1:X", scanned_at=Timestamp(seconds=-(10**15))),
                ]
            ),
            metadata=platform.device_auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == [("scans[1].scanned_at", "FIELD_OUT_OF_RANGE")]
