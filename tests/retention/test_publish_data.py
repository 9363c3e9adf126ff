"""publish_svc's retention steps over real gRPC and the real database: certificates' QR texts, feed payloads,
and the audit rows of both services."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from services.common.db import connect
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import person_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.conftest import bearer
from tests.grpc_errors import error_reason
from tests.publish_svc.conftest import new_partner
from tests.retention.conftest import (
    POLICY,
    backdate_samples,
    person_number,
    run_publish_retention,
    run_result_retention,
)


async def execute(database_url: str, sql: str, *args) -> str:
    conn = await connect(database_url)
    try:
        return await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch(database_url: str, sql: str, *args):
    conn = await connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_certificate_qr_text_is_erased_after_the_period_its_status_stays(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    n_old, n_new = person_number(), person_number()
    start = await platform.head() + 1
    await platform.release(1, start=n_old)
    await platform.release(1, start=n_new)
    old_event, new_event = await platform.collect(partner["token"], start, 2)
    old_uvci, new_uvci = old_event.certificate.certificate_id, new_event.certificate.certificate_id
    await execute(
        database_url,
        "UPDATE certificates SET issued_at = issued_at - $2::interval WHERE uvci = $1",
        old_uvci,
        POLICY.personal_data + timedelta(days=1),
    )

    done = await run_publish_retention(database_url, platform.pii)

    assert done["certificate_qr"] >= 1
    rows = {
        r["uvci"]: r
        for r in await fetch(database_url, "SELECT * FROM certificates WHERE uvci = ANY($1)", [old_uvci, new_uvci])
    }
    assert rows[old_uvci]["qr_enc"] is None and rows[old_uvci]["status"] == "VALID"
    assert rows[new_uvci]["qr_enc"] is not None
    reads_before = await fetch(
        database_url, "SELECT id FROM personal_data_reads WHERE principal_id = $1", partner["id"]
    )

    # Rendering the erased one: FAILED_PRECONDITION, and no read recorded (nothing personal was read).
    for call in (
        platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id=old_uvci, format=ppb.QR_IMAGE_FORMAT_SVG), metadata=auth
        ),
        platform.publish.GetCertificateDocument(
            ppb.GetCertificateDocumentRequest(certificate_id=old_uvci, paper_size=ppb.PAPER_SIZE_A4), metadata=auth
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(refused.value) == "PERSONAL_DATA_ERASED"
    assert (
        await fetch(database_url, "SELECT id FROM personal_data_reads WHERE principal_id = $1", partner["id"])
        == reads_before
    )
    image = await platform.publish.GetCertificateQr(
        ppb.GetCertificateQrRequest(certificate_id=new_uvci, format=ppb.QR_IMAGE_FORMAT_SVG), metadata=auth
    )
    assert image.image

    # A lookup (the person is not erased: a newer test would keep them) shows the certificate without its text.
    lookup = ppb.GetCitizenResultsRequest(identity=old_event.person.identity, date_of_birth="1985-03-14")
    [item] = (await platform.publish.GetCitizenResults(lookup, metadata=auth)).results
    assert item.certificate.certificate_id == old_uvci and item.certificate.qr == ""
    assert item.certificate.status == c.CERTIFICATE_STATUS_VALID and item.person.full_name


async def test_feed_payloads_are_redacted_after_their_period_and_the_feed_stays_whole(platform, database_url):
    entitled = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    await platform.release(3, start=person_number())
    before = await platform.collect(entitled["token"], start, 6, pending=True)  # 3 registrations, 3 results
    positions = [e.position for e in before]
    assert positions == list(range(start, start + 6))
    old = positions[:4]
    await execute(
        database_url,
        "UPDATE feed_events SET relayed_at = relayed_at - $2::interval WHERE position = ANY($1::bigint[])",
        old,
        POLICY.feed_payload + timedelta(days=1),
    )

    done = await run_publish_retention(database_url, platform.pii)

    assert done["feed_payloads"] >= 4
    after = await platform.collect(entitled["token"], start, 6, pending=True)
    assert [e.position for e in after] == positions  # gapless, nothing dropped
    for was, now in zip(before, after, strict=True):
        if was.position in old:
            # The person reduced to the area codes, the QR text gone; everything else as it was.
            assert now.person == person_pb2.Person(
                province_code=was.person.province_code,
                district_code=was.person.district_code,
                personal_data_erased=True,
            )
            assert not now.certificate.qr
            expected = type(was)()
            expected.CopyFrom(was)
            expected.person.CopyFrom(now.person)
            expected.certificate.ClearField("qr")
            if not was.HasField("certificate"):
                expected.ClearField("certificate")
            assert now == expected
        else:
            assert now == was
    redacted = await fetch(
        database_url, "SELECT position FROM feed_events WHERE redacted_at IS NOT NULL AND position = ANY($1)", positions
    )
    assert sorted(r["position"] for r in redacted) == old
    again = await run_publish_retention(database_url, platform.pii)
    assert again["feed_payloads"] == 0


async def test_audit_rows_are_deleted_after_the_audit_period_only(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    n = person_number()
    start = await platform.head() + 1
    await platform.release(2, start=n)
    await platform.collect(partner["token"], start, 2)
    lookup = ppb.GetCitizenResultsRequest(
        identity=person_pb2.PersonIdentity(
            type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID, number=f"{24_000_000_000 + n:012d}"
        ),
        date_of_birth="1985-03-14",
    )
    for _ in range(3):
        await platform.publish.GetCitizenResults(lookup, metadata=auth)
    reads = [
        r["id"]
        for r in await fetch(
            database_url, "SELECT id FROM personal_data_reads WHERE principal_id = $1 ORDER BY id", partner["id"]
        )
    ]
    audits = [
        r["id"]
        for r in await fetch(
            database_url, "SELECT id FROM audit_log WHERE principal_id = $1::uuid ORDER BY id", platform.unit["id"]
        )
    ]
    assert len(reads) >= 4 and len(audits) >= 2
    too_old = POLICY.audit + timedelta(days=1)
    just_kept = POLICY.audit - timedelta(days=1)
    await execute(
        database_url, "UPDATE personal_data_reads SET at = at - $2::interval WHERE id = ANY($1)", reads[:2], too_old
    )
    await execute(
        database_url, "UPDATE personal_data_reads SET at = at - $2::interval WHERE id = ANY($1)", reads[2:3], just_kept
    )
    await execute(database_url, "UPDATE audit_log SET at = at - $2::interval WHERE id = ANY($1)", audits[:1], too_old)
    await execute(
        database_url, "UPDATE audit_log SET at = at - $2::interval WHERE id = ANY($1)", audits[1:2], just_kept
    )

    result_done = await run_result_retention(database_url)
    publish_done = await run_publish_retention(database_url, platform.pii)

    assert result_done["audit_log"] >= 1 and publish_done["personal_data_reads"] >= 2
    left_reads = await fetch(database_url, "SELECT id FROM personal_data_reads WHERE id = ANY($1) ORDER BY id", reads)
    assert [r["id"] for r in left_reads] == reads[2:]
    left_audits = await fetch(database_url, "SELECT id FROM audit_log WHERE id = ANY($1) ORDER BY id", audits)
    assert [r["id"] for r in left_audits] == audits[1:]


async def test_persons_erased_with_their_feed_and_certificates_leave_no_personal_data(platform, database_url):
    """The whole policy at once, after every period: the person, their samples' hashes, the certificate's
    text and the feed payloads hold nothing personal, and every feed position is still delivered."""
    entitled = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    [barcode] = await platform.release(1, start=person_number())
    events = await platform.collect(entitled["token"], start, 2, pending=True)
    [person_id] = await backdate_samples(database_url, [barcode])
    positions = [e.position for e in events]
    await execute(
        database_url,
        "UPDATE feed_events SET relayed_at = relayed_at - $2::interval WHERE position = ANY($1::bigint[])",
        positions,
        POLICY.personal_data + timedelta(days=1),
    )
    await execute(
        database_url,
        "UPDATE certificates SET issued_at = issued_at - $2::interval WHERE person_id = $1",
        person_id,
        POLICY.personal_data + timedelta(days=1),
    )

    await run_result_retention(database_url)
    await run_publish_retention(database_url, platform.pii)

    certificates = await fetch(database_url, "SELECT qr_enc FROM certificates WHERE person_id = $1", person_id)
    assert [r["qr_enc"] for r in certificates] == [None]
    replay = await platform.collect(entitled["token"], start, 2, pending=True)
    assert [e.position for e in replay] == positions
    for event in replay:
        assert event.person.personal_data_erased and not event.person.full_name and not event.certificate.qr
    # Every sealed value still in the database opens to something that does not contain the name.
    rows = await fetch(
        database_url, "SELECT payload_enc FROM feed_events WHERE position = ANY($1::bigint[])", positions
    )
    for row in rows:
        assert "Nguyễn".encode() not in platform.pii.open_bytes("feed.event", bytes(row["payload_enc"]))
    assert replay[1].kind == t.RESULT_EVENT_KIND_RELEASED
