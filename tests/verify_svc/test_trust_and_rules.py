"""Operators change the trust list and province rules; checkpoints see the change without a restart."""

import asyncio
import hashlib
import time
from datetime import UTC, datetime

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.duration_pb2 import Duration

from services.gen.covidtest.admin.v1 import admin_service_pb2 as apb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import province_rule_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.hcert import codec
from services.hcert import keys as hkeys
from tests.conftest import bearer
from tests.grpc_errors import error_reason, violations
from tests.result_svc.helpers import rid
from tests.verify_svc.conftest import released_certificate


async def until(check, seconds: float = 5):
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def foreign_dcc(material, **test_overrides) -> str:
    now = int(time.time())
    entry = {
        "tg": "840539006",
        "tt": "LP6464-4",
        "sc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tr": "260415000",
        "tc": "Seoul lab",
        "co": "KR",
        "is": "KDCA",
        "ci": "URN:UVCI:01:KR:ABC123#1",
    }
    entry.update(test_overrides)
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "Kim", "fnt": "KIM", "gn": "Min", "gnt": "MIN"},
        "dob": "1990-01-01",
        "t": [entry],
    }
    return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)


@pytest.fixture(scope="module")
async def admin(platform):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.result_server.port}") as channel:
        yield admin_service_pb2_grpc.AdminServiceStub(channel), bearer(platform.operator["token"])


async def test_imported_foreign_certificate_verifies_without_status(platform, admin):
    stub, auth = admin
    korea = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    qr = foreign_dcc(korea)
    verify = lambda: platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth)  # noqa: E731
    assert (await verify()).verdict == v.VERDICT_UNKNOWN_ISSUER
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ImportTrustedCertificate(
            apb.ImportTrustedCertificateRequest(
                request_id=rid(), certificate_pem=korea.certificate.public_bytes(Encoding.PEM).decode(), country="JP"
            ),
            metadata=auth,
        )
    assert error_reason(err.value) == "CERTIFICATE_COUNTRY_MISMATCH"
    imported = await stub.ImportTrustedCertificate(
        apb.ImportTrustedCertificateRequest(request_id=rid(), certificate_der=korea.certificate_der, country="KR"),
        metadata=auth,
    )
    answer = await until(lambda: _if(verify(), lambda a: a.verdict == v.VERDICT_VALID))
    assert answer.issuer_country == "KR" and answer.status_source == v.STATUS_SOURCE_UNCHECKED
    await stub.RemoveTrustedCertificate(
        apb.RemoveTrustedCertificateRequest(
            request_id=rid(), trusted_certificate_id=imported.trusted_certificate.trusted_certificate_id
        ),
        metadata=auth,
    )
    await until(lambda: _if(verify(), lambda a: a.verdict == v.VERDICT_UNKNOWN_ISSUER))


async def _if(call, predicate):
    answer = await call
    return answer if predicate(answer) else None


async def test_test_only_key_cannot_sign_a_vaccination(platform, admin):
    stub, auth = admin
    material = hkeys.SigningKeyMaterial.generate("ES256", country="DE")  # DCC key usage: test entries only
    await stub.ImportTrustedCertificate(
        apb.ImportTrustedCertificateRequest(request_id=rid(), certificate_der=material.certificate_der, country="DE"),
        metadata=auth,
    )
    now = int(time.time())
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "Muller", "fnt": "MULLER"},
        "dob": "1980-05-05",
        "v": [
            {
                "tg": "840539006",
                "vp": "1119349007",
                "mp": "EU/1/20/1528",
                "ma": "ORG-100030215",
                "dn": 2,
                "sd": 2,
                "dt": "2021-06-01",
                "co": "DE",
                "is": "RKI",
                "ci": "URN:UVCI:01:DE:XYZ#4",
            }
        ],
    }
    qr = codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)
    answer = await until(
        lambda: _if(
            platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth),
            lambda a: a.verdict != v.VERDICT_UNKNOWN_ISSUER,
        )
    )
    assert answer.verdict == v.VERDICT_SIGNATURE_INVALID


async def test_province_rule_change_reaches_verification_and_devices(platform, admin):
    stub, auth = admin
    event = await released_certificate(platform, 900)
    verify = lambda: platform.verify.Verify(vpb.VerifyRequest(qr=event.certificate.qr), metadata=platform.device_auth)  # noqa: E731
    assert (await verify()).verdict == v.VERDICT_VALID
    disabled = await stub.SetProvinceRule(
        apb.SetProvinceRuleRequest(
            request_id=rid(),
            rule=province_rule_pb2.ProvinceRule(
                province_code="24",
                entry_type=c.ENTRY_TYPE_TEST,
                test_type=t.TEST_TYPE_NAAT,
                disabled=True,
                description="test: Bắc Giang accepts no NAAT",
            ),
        ),
        metadata=auth,
    )
    assert disabled.rule.version > 0 and disabled.rule.rule_id
    answer = await until(lambda: _if(verify(), lambda a: a.verdict == v.VERDICT_RULE_NOT_MET))
    assert answer.rule_version == disabled.rule.version
    rules = await platform.verify.GetRules(vpb.GetRulesRequest(), metadata=platform.device_auth)
    assert disabled.rule.version in {r.version for r in rules.rules} and rules.ruleset_version >= disabled.rule.version
    enabled = await stub.SetProvinceRule(
        apb.SetProvinceRuleRequest(
            request_id=rid(),
            rule=province_rule_pb2.ProvinceRule(
                province_code="24",
                entry_type=c.ENTRY_TYPE_TEST,
                test_type=t.TEST_TYPE_NAAT,
                validity=Duration(seconds=48 * 3600),
                accepted_outcomes=[t.OUTCOME_NEGATIVE],
            ),
        ),
        metadata=auth,
    )
    assert enabled.rule.rule_id == disabled.rule.rule_id and enabled.rule.version > disabled.rule.version
    answer = await until(lambda: _if(verify(), lambda a: a.verdict == v.VERDICT_VALID))
    assert answer.valid_until.seconds == event.result.collected_at.seconds + 48 * 3600
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetProvinceRule(
            apb.SetProvinceRuleRequest(
                request_id=rid(),
                rule=province_rule_pb2.ProvinceRule(
                    province_code="24", entry_type=c.ENTRY_TYPE_TEST, test_type=t.TEST_TYPE_NAAT
                ),
            ),
            metadata=auth,
        )
    assert ("rule.validity", "FIELD_OUT_OF_RANGE") in violations(err.value)
    listed = await stub.ListProvinceRules(
        apb.ListProvinceRulesRequest(province_code="24", include_history=True), metadata=auth
    )
    assert [r.version for r in listed.rules][:2] == [enabled.rule.version, disabled.rule.version]


async def test_an_unusable_trust_entry_is_skipped_and_the_trust_list_keeps_refreshing(platform, admin, database_url):
    """An Ed25519 certificate in the trust list (import refuses it; here it is written straight into the
    table) used to raise in the refresh: the task ended and the trust list froze. Now it is skipped,
    counted, and a P-384 certificate imported after it still reaches verification."""
    import uuid

    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from services.common.db import connect
    from services.registry.repository import trust_list as trust_repo
    from services.registry.repository import trusted_certificates as repo
    from services.verify_svc.trust import TRUST_ENTRIES_SKIPPED
    from tests.hcert.test_signature_algorithms import ecdsa_qr, foreign_certificate

    stub, auth = admin
    skipped_before = TRUST_ENTRIES_SKIPPED._value.get()
    ed_der = foreign_certificate(ed25519.Ed25519PrivateKey.generate())
    conn = await connect(database_url)
    try:
        now = datetime.now(UTC)
        await repo.insert_trusted(
            conn, certificate_id=uuid.uuid4(), kid=hkeys.kid_of(ed_der), country="DE", certificate_der=ed_der,
            not_before=now, not_after=now.replace(year=now.year + 1), key_usage=[],
        )  # fmt: skip
        await trust_repo.notify_trust_list(conn)
    finally:
        await conn.close()
    await until(lambda: _async(TRUST_ENTRIES_SKIPPED._value.get() > skipped_before))

    key = ec.generate_private_key(ec.SECP384R1())
    der = foreign_certificate(key)
    qr = ecdsa_qr(key, "ES384", der)
    await stub.ImportTrustedCertificate(
        apb.ImportTrustedCertificateRequest(request_id=rid(), certificate_der=der, country="DE"), metadata=auth
    )
    answer = await until(
        lambda: _if(
            platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth),
            lambda a: a.verdict != v.VERDICT_UNKNOWN_ISSUER,
        )
    )
    assert answer.verdict == v.VERDICT_VALID and answer.issuer_country == "DE"
    trust_list = await platform.verify.GetTrustList(vpb.GetTrustListRequest(), metadata=platform.device_auth)
    listed = {k.sha256_fingerprint: k for k in trust_list.added}
    assert hashlib.sha256(der).hexdigest() in listed and hashlib.sha256(ed_der).hexdigest() not in listed
    assert listed[hashlib.sha256(der).hexdigest()].algorithm == c.SIGNING_ALGORITHM_ES384


async def _async(value):
    return value


async def test_verify_answers_signature_and_schema_as_separate_findings(platform, admin):
    stub, auth = admin
    material = hkeys.SigningKeyMaterial.generate("ES256", country="DE")
    await stub.ImportTrustedCertificate(
        apb.ImportTrustedCertificateRequest(request_id=rid(), certificate_der=material.certificate_der, country="DE"),
        metadata=auth,
    )
    now = int(time.time())

    def signed(**changes) -> str:
        dcc = {
            "ver": "1.0.0",
            "nam": {"fn": "Muller", "fnt": "MULLER"},
            "dob": "1980-05-05",
            "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "tr": "260415000", "tc": "Labor", "co": "DE", "is": "RKI", "ci": "URN:UVCI:01:DE:F#1"}],
            **changes,
        }  # fmt: skip
        return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)

    def verify(qr):
        return platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth)

    good = await until(lambda: _if(verify(signed()), lambda a: a.verdict != v.VERDICT_UNKNOWN_ISSUER))
    assert good.verdict == v.VERDICT_VALID and good.signature_valid and good.schema_error == ""
    partial = await verify(signed(dob="1980"))  # a partial birth date: not in schema 1.0.0 (from 1.1.0)
    assert partial.verdict == v.VERDICT_MALFORMED and partial.malformed_stage == v.MALFORMED_STAGE_SCHEMA
    assert partial.signature_valid and "/dob" in partial.schema_error and "1.0.0" in partial.schema_error
    stranger = hkeys.SigningKeyMaterial.generate("ES256", country="DE")  # not trusted: no signature verifies
    forged = codec.encode_hcert(
        {"ver": "1.0.0", "nam": {"fn": "X"}, "dob": "1980"}, signer=codec.Signer(stranger), issued_at=now,
        expires_at=now + 60,
    )  # fmt: skip
    answer = await verify(forged)
    assert answer.verdict == v.VERDICT_MALFORMED and not answer.signature_valid and answer.schema_error
