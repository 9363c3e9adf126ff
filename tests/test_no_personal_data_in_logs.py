"""No personal data and no bearer token reaches the logs during a full flow: a sample registered with a
distinctive person, its result recorded, relayed, delivered on the feed, looked up by the citizen's
identity and phone, and verified at a checkpoint. Every log record is captured on the root logger and
formatted with the services' own JSON formatter, as it would be written."""

import logging
import secrets
import uuid

import grpc
import pytest

from services.common import logs
from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import REDIS_URL, bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import activate_new_key, new_partner, start_platform, stop_platform, until_status_cached
from tests.result_svc.helpers import person, result, rid, sample, unique


class Capture(logging.Handler):
    """Every record, formatted by the services' JSON formatter when it is emitted (in the call's context)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture():
    """A capturing handler on the root logger, which passes every level (DEBUG) while the test runs."""
    root = logging.getLogger()
    level = root.level
    handler = Capture()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_full_flow_logs_no_personal_data_and_no_token(database_url, capture):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    platform = await start_platform(database_url, prefix)
    verify_server = None
    try:
        platform.key = await activate_new_key(database_url, platform.env)
        # Started after the key is active, so its first trust list holds the key.
        verify_server = await start_verify_svc(platform.env)
        platform.unit = await make_principal(database_url, Role.SAMPLER)
        platform.lab = await make_principal(database_url, Role.LAB)
        platform.operator = await make_principal(database_url, Role.OPERATOR)
        partner = await new_partner(database_url, personal_data_access=True)
        device = await make_principal(database_url, Role.CHECKPOINT, province="24")

        digits = f"{secrets.randbelow(10**8):08d}"
        name = f"Quokkabelle Zyxwanova {secrets.token_hex(3)}"
        birth_date = "1937-11-23"
        phone_local, phone_e164 = f"09{digits}", f"+849{digits}"
        identity = f"{secrets.randbelow(10**12):012d}"
        someone = person(
            0,
            full_name=name,
            date_of_birth=birth_date,
            phone=phone_local,
            identity={"type": person(0).identity.type, "number": identity},
        )
        secret_values = [name, birth_date, phone_local, phone_e164, identity]
        tokens = [p["token"] for p in (platform.unit, platform.lab, platform.operator, partner, device)]

        start = await platform.head() + 1
        item = sample(unique("LOGS"), platform.lab["id"], person=someone)
        registered = await platform.results.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=bearer(platform.unit["token"])
        )
        assert registered.created_count == 1, registered
        # The same sample again in a new request: refused item by item, with the person in the request.
        again = await platform.results.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=bearer(platform.unit["token"])
        )
        assert again.created_count == 0, again
        await platform.results.GetSample(
            rpb.GetSampleRequest(sample_id=registered.results[0].sample_id), metadata=bearer(platform.unit["token"])
        )
        recorded = await platform.results.RecordResults(
            rpb.RecordResultsRequest(
                request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=item.sample_barcode)]
            ),
            metadata=bearer(platform.lab["token"]),
        )
        assert recorded.recorded_count == 1, recorded

        event = (await platform.collect(partner["token"], start, 1))[0]  # relayed, delivered with the person
        assert event.result.sample_barcode == item.sample_barcode and event.person.full_name == name
        certificate = event.certificate
        await until_status_cached(REDIS_URL, prefix, certificate.certificate_id)

        partner_auth = bearer(partner["token"])
        by_identity = await platform.publish.GetCitizenResults(
            ppb.GetCitizenResultsRequest(identity=someone.identity, date_of_birth=birth_date), metadata=partner_auth
        )
        by_phone = await platform.publish.GetCitizenResults(
            ppb.GetCitizenResultsRequest(phone=phone_local, date_of_birth=birth_date), metadata=partner_auth
        )
        assert len(by_identity.results) == len(by_phone.results) == 1
        await platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id=certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_PNG),
            metadata=partner_auth,
        )
        printed = await platform.publish.GetCertificateDocument(
            ppb.GetCertificateDocumentRequest(certificate_id=certificate.certificate_id), metadata=partner_auth
        )
        assert printed.document.startswith(b"%PDF-")

        async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel:
            verify = verify_service_pb2_grpc.VerifyServiceStub(channel)
            answer = await verify.Verify(vpb.VerifyRequest(qr=certificate.qr), metadata=bearer(device["token"]))
            assert answer.verdict == v.VERDICT_VALID, answer.reason
            batch = await verify.VerifyBatch(
                vpb.VerifyBatchRequest(scans=[vpb.VerifyRequest(qr=certificate.qr)] * 2),
                metadata=bearer(device["token"]),
            )
            assert [r.verdict for r in batch.results] == [v.VERDICT_VALID] * 2
            # Refusals are logged (with the caller's label): they must not carry the token either.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await verify.Verify(vpb.VerifyRequest(qr=certificate.qr), metadata=partner_auth)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            bogus = "ctk_" + secrets.token_urlsafe(32)
            tokens.append(bogus)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await verify.Verify(vpb.VerifyRequest(qr=certificate.qr), metadata=bearer(bogus))
            assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        if verify_server is not None:
            await verify_server.stop(0)
        await stop_platform(platform)

    # The capture saw the calls (the refusals above are logged within them), so it is not vacuous.
    assert any('"role not allowed"' in line and '"request_id"' in line for line in capture.lines), capture.lines
    assert any('"caller refused"' in line for line in capture.lines), capture.lines
    assert any('"relay leader: relaying"' in line for line in capture.lines), capture.lines  # INFO passes too
    leaks = [(value, line) for line in capture.lines for value in secret_values + tokens if value in line]
    assert not leaks, leaks
