"""One of our own certificates whose status cannot be established is never VALID: STATUS_UNKNOWN, with the
province's policy (STATUS_UNKNOWN_ACCEPT_PROVINCES) in accept_with_warning.

Here the database does not hold the certificate: a genuine DCC signed with the platform's active key
that the relay never issued (a lagging read replica, or a key used outside the platform). The case with
Redis and Postgres both unreachable is in tests/fault/test_verify_dependencies_down.py."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.hcert import codec
from services.registry import signing_keys
from services.registry.key_sealing import SigningKeyOpener, parse_kek_private
from services.verify_svc.config import parse_province_codes
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.dcc_samples import negative_naat_dcc
from tests.verify_svc.conftest import released_certificate


@pytest.fixture(scope="module")
async def checkpoints(platform, database_url):
    """verify_svc where province 26 accepts STATUS_UNKNOWN with a warning, and a device in 24 and in 26."""
    env = {**platform.env, "STATUS_UNKNOWN_ACCEPT_PROVINCES": "26"}
    server = await start_verify_svc(env)
    refusing = bearer((await make_principal(database_url, Role.CHECKPOINT, province="24"))["token"])
    accepting = bearer((await make_principal(database_url, Role.CHECKPOINT, province="26"))["token"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield verify_service_pb2_grpc.VerifyServiceStub(channel), refusing, accepting
    await server.stop(0)


async def never_issued_qr(platform, database_url) -> str:
    """A current negative NAAT DCC signed with the platform's ACTIVE key, unknown to the certificates table."""
    conn = await connect(database_url)
    try:
        active = await signing_keys.load_active(
            conn, SigningKeyOpener(parse_kek_private(platform.env["SIGNING_KEYS_KEK"]))
        )
    finally:
        await conn.close()
    assert active is not None
    now = int(time.time())
    dcc = negative_naat_dcc(
        datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2),
        f"URN:UVCI:01:VN:{uuid.uuid4().hex[:12].upper()}#X",
    )
    return codec.encode_hcert(dcc, signer=codec.Signer(active.material), issued_at=now - 60, expires_at=now + 3600)


async def test_our_certificate_unknown_to_the_database_is_status_unknown_never_valid(
    platform, checkpoints, database_url
):
    stub, refusing, accepting = checkpoints
    qr = await never_issued_qr(platform, database_url)
    for _ in range(2):  # the repeat scan too (the unknown id is then remembered)
        answer = await stub.Verify(vpb.VerifyRequest(qr=qr), metadata=refusing)
        assert answer.verdict == v.VERDICT_STATUS_UNKNOWN, answer.reason
        assert answer.status_source == v.STATUS_SOURCE_DATABASE
        assert answer.reason == "hồ sơ của cơ quan cấp không có chứng nhận này"  # in verify_svc's default, vi
        assert not answer.accept_with_warning
        assert answer.family_name  # genuine: the officer sees whose certificate it is

    answer = await stub.Verify(vpb.VerifyRequest(qr=qr), metadata=accepting)
    assert answer.verdict == v.VERDICT_STATUS_UNKNOWN and answer.accept_with_warning

    batch = await stub.VerifyBatch(vpb.VerifyBatchRequest(scans=[vpb.VerifyRequest(qr=qr)] * 2), metadata=accepting)
    assert [(r.verdict, r.accept_with_warning) for r in batch.results] == [(v.VERDICT_STATUS_UNKNOWN, True)] * 2


async def test_a_certificate_whose_status_is_known_is_valid_without_a_warning(platform, checkpoints):
    stub, refusing, accepting = checkpoints
    event = await released_certificate(platform, 900)
    for device in (refusing, accepting):
        answer = await stub.Verify(vpb.VerifyRequest(qr=event.certificate.qr), metadata=device)
        assert answer.verdict == v.VERDICT_VALID and not answer.accept_with_warning


def test_the_policy_names_two_digit_provinces():
    assert parse_province_codes(" 24, 26 ,") == {"24", "26"}
    assert parse_province_codes("") == frozenset()
    with pytest.raises(ValueError, match="Bac Giang"):
        parse_province_codes("24,Bac Giang")
