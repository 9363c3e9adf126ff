"""GetCitizenResults and GetCertificateQr: second factor, no enumeration, rate limits, printable QR."""

import time

import grpc
import pytest

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import person_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.conftest import bearer
from tests.grpc_errors import error_reason
from tests.publish_svc.conftest import new_partner
from tests.result_svc.helpers import person


async def wait_published(platform, partner, count: int, start: int) -> list:
    return await platform.collect(partner["token"], start, count)


def by_identity(n: int, dob: str = "1985-03-14") -> ppb.GetCitizenResultsRequest:
    return ppb.GetCitizenResultsRequest(identity=person(n).identity, date_of_birth=dob)


async def test_citizen_found_by_identity_or_phone_with_birth_date_only(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    start = await platform.head() + 1
    await platform.release(1, start=5000)
    events = await wait_published(platform, partner, 1, start)
    found = await platform.publish.GetCitizenResults(by_identity(5000), metadata=auth)
    assert len(found.results) == 1
    item = found.results[0]
    assert item.result.outcome == t.OUTCOME_NEGATIVE and item.certificate.status == c.CERTIFICATE_STATUS_VALID
    assert item.certificate.qr == events[0].certificate.qr and item.person_key == events[0].person_key
    assert item.person.full_name == "Nguyễn Văn An"
    phone = person(5000).phone
    by_phone = await platform.publish.GetCitizenResults(
        ppb.GetCitizenResultsRequest(phone=phone, date_of_birth="1985-03-14"), metadata=auth
    )
    assert [r.result.result_id for r in by_phone.results] == [item.result.result_id]

    # Wrong birth date, unknown person: the same empty answer, nothing revealed.
    wrong_dob = await platform.publish.GetCitizenResults(by_identity(5000, dob="1985-03-15"), metadata=auth)
    unknown = await platform.publish.GetCitizenResults(by_identity(987_654), metadata=auth)
    assert wrong_dob == unknown == ppb.GetCitizenResultsResponse()


async def test_partner_without_personal_data_may_not_look_up_citizens_or_render_qr(platform, database_url):
    """Lookups answer with QR texts (names, birth date) and the QR image is that text: entitled partners only."""
    partner = await new_partner(database_url, personal_data_access=False)
    start = await platform.head() + 1
    await platform.release(1, start=5100)
    event = (await wait_published(platform, partner, 1, start))[0]
    auth = bearer(partner["token"])
    for call in (
        lambda: platform.publish.GetCitizenResults(by_identity(5100), metadata=auth),
        lambda: platform.publish.GetCitizenResults(by_identity(1), metadata=auth),  # denied before input checks
        lambda: platform.publish.GetCitizenResults(ppb.GetCitizenResultsRequest(), metadata=auth),
        lambda: platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(
                certificate_id=event.certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_PNG
            ),
            metadata=auth,
        ),
        lambda: platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", format=ppb.QR_IMAGE_FORMAT_SVG),
            metadata=auth,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "PERSONAL_DATA_NOT_ENTITLED"


@pytest.mark.parametrize(
    "request_, field",
    [
        (ppb.GetCitizenResultsRequest(date_of_birth="1985-03-14"), "identity"),
        (ppb.GetCitizenResultsRequest(phone="12345", date_of_birth="1985-03-14"), "phone"),
        (ppb.GetCitizenResultsRequest(phone="0912345678"), "date_of_birth"),
        (
            ppb.GetCitizenResultsRequest(identity=person_pb2.PersonIdentity(number="1"), date_of_birth="1985"),
            "identity",
        ),
    ],
)
async def test_lookup_input_errors(platform, database_url, request_, field):
    partner = await new_partner(database_url, personal_data_access=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCitizenResults(request_, metadata=bearer(partner["token"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_lookups_are_rate_limited_per_partner(database_url):
    import uuid

    from tests.publish_svc.conftest import start_platform, stop_platform

    platform = await start_platform(
        database_url, f"t{uuid.uuid4().hex[:12]}", CITIZEN_LOOKUPS_PER_MINUTE="5", RELAY_ENABLED="false"
    )
    try:
        other = await new_partner(database_url, personal_data_access=True)
        for _ in range(3):  # an attempt that crossed a window boundary proves nothing: run it again
            greedy = await new_partner(database_url, personal_data_access=True)
            codes = []
            window = int(time.time() // 60)
            for _ in range(8):
                try:
                    await platform.publish.GetCitizenResults(by_identity(1), metadata=bearer(greedy["token"]))
                    codes.append("OK")
                except grpc.aio.AioRpcError as err:
                    codes.append(error_reason(err))
            if int(time.time() // 60) == window:  # the fixed window did not roll over during the loop
                break
        else:
            pytest.fail("every attempt crossed a rate-limit window boundary")
        assert codes == ["OK"] * 5 + ["RATE_LIMITED"] * 3
        await platform.publish.GetCitizenResults(by_identity(1), metadata=bearer(other["token"]))  # its own budget
    finally:
        await stop_platform(platform)


async def test_certificate_qr_as_png_and_svg(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    await platform.release(1, start=5200)
    event = (await wait_published(platform, partner, 1, start))[0]
    auth = bearer(partner["token"])
    png = await platform.publish.GetCertificateQr(
        ppb.GetCertificateQrRequest(certificate_id=event.certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_PNG),
        metadata=auth,
    )
    assert png.image.startswith(b"\x89PNG\r\n\x1a\n") and png.content_type == "image/png"
    assert png.status == c.CERTIFICATE_STATUS_VALID and png.expires_at == event.certificate.expires_at
    svg = await platform.publish.GetCertificateQr(
        ppb.GetCertificateQrRequest(
            certificate_id=event.certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_SVG, scale=2
        ),
        metadata=auth,
    )
    assert b"<svg" in svg.image and svg.content_type == "image/svg+xml"
    for request, code in (
        (
            ppb.GetCertificateQrRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", format=ppb.QR_IMAGE_FORMAT_PNG),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            ppb.GetCertificateQrRequest(certificate_id=event.certificate.certificate_id),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await platform.publish.GetCertificateQr(request, metadata=auth)
        assert err.value.code() == code


async def test_a_registered_sample_is_pending_in_the_feed_and_the_lookup_then_turns_into_its_result(
    platform, database_url
):
    """Issue 18: "sample taken at 09:10, result expected" — a sample with no result yet is visible, as
    SAMPLE_REGISTERED in the feed and as a pending sample in GetCitizenResults, until its result arrives."""
    from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
    from tests.result_svc.helpers import result, rid, sample, unique

    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    start = await platform.head() + 1
    barcode = unique("PEND")
    item = sample(barcode, platform.lab["id"], 5600)
    registered = await platform.results.RegisterSamples(
        rpb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=bearer(platform.unit["token"])
    )
    sample_id = registered.results[0].sample_id
    [event] = await platform.collect(partner["token"], start, 1, pending=True)
    assert event.kind == t.RESULT_EVENT_KIND_SAMPLE_REGISTERED and event.position == start
    assert not event.HasField("result") and not event.HasField("certificate")
    assert (event.sample.sample_id, event.sample.sample_barcode) == (sample_id, barcode)
    assert event.sample.state == t.SAMPLE_STATE_REGISTERED and event.sample.lab_org_id == platform.lab["id"]
    assert event.sample.collected_at == item.collected_at and event.sample.sampling_site == item.sampling_site
    assert event.sample.registered_at.seconds >= item.collected_at.seconds
    assert event.person.full_name == "Nguyễn Văn An"

    found = await platform.publish.GetCitizenResults(by_identity(5600), metadata=auth)
    [pending] = found.results
    assert not pending.HasField("result") and not pending.HasField("certificate")
    assert pending.pending_sample == event.sample and pending.person_key == event.person_key
    assert pending.person.full_name == "Nguyễn Văn An"

    await platform.results.RecordResults(
        rpb.RecordResultsRequest(request_id=rid(), results=[result(sample_barcode=barcode)]),
        metadata=bearer(platform.lab["token"]),
    )
    [released] = await platform.collect(partner["token"], start + 1, 1)
    assert released.kind == t.RESULT_EVENT_KIND_RELEASED and released.result.sample_id == sample_id
    found = await platform.publish.GetCitizenResults(by_identity(5600), metadata=auth)
    [resulted] = found.results
    assert not resulted.HasField("pending_sample") and resulted.result.sample_id == sample_id
    assert resulted.certificate.certificate_id == released.certificate.certificate_id
