"""The read audit over real gRPC (issue 14): every read of personal data leaves one `personal_data_reads`
row with the caller, the purpose and the result ids, and nothing personal in it.

- a citizen lookup: one CITIZEN_LOOKUP row with the results it returned (an empty lookup: no result ids);
- a QR image: one QR_RENDER row with the certificate's result;
- the feed: one FEED_DELIVERY row per message with events sent to an entitled partner (not per event),
  written before the message leaves; a partner without personal-data access leaves none.
"""

import asyncio

import grpc

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from tests.conftest import bearer
from tests.publish_svc.conftest import new_partner
from tests.result_svc.helpers import person


async def reads_of(db, partner: dict) -> list[dict]:
    rows = await db.fetch(
        "SELECT principal_kind, principal_id, purpose, result_ids, detail FROM personal_data_reads "
        "WHERE principal_id = $1::uuid ORDER BY id",
        partner["id"],
    )
    return [dict(r) for r in rows]


async def assert_nothing_personal(db, platform, numbers: list[int]) -> None:
    """No name, birth date, phone, identity number or lookup hash in any audit row."""
    dump = await db.fetchval("SELECT COALESCE(string_agg(a::text, ' '), '') FROM personal_data_reads a")
    assert dump  # there is something to look at
    for n in numbers:
        someone = person(n)
        identity = f"CITIZEN_ID|VN|{someone.identity.number}"
        for secret in (
            someone.identity.number,
            someone.phone,
            someone.phone[1:],
            someone.full_name,
            "Nguy",
            "1985-03-14",
            "1985",
            platform.pii.keyed_hash("person.identity", identity).hex(),
            platform.pii.keyed_hash("person.phone", someone.phone).hex(),
            platform.pii.keyed_hash("person.date_of_birth", "1985-03-14").hex(),
        ):
            assert secret not in dump, secret


async def test_a_citizen_lookup_records_the_caller_and_the_results_it_returned(platform, database_url, db):
    partner = await new_partner(database_url, personal_data_access=True)
    auth = bearer(partner["token"])
    start = await platform.head() + 1
    await platform.release(2, start=9100)
    await platform.collect(partner["token"], start, 2)
    await db.execute("DELETE FROM personal_data_reads WHERE principal_id = $1::uuid", partner["id"])  # the feed's

    found = await platform.publish.GetCitizenResults(
        ppb.GetCitizenResultsRequest(identity=person(9100).identity, date_of_birth="1985-03-14"), metadata=auth
    )
    assert len(found.results) == 1
    rows = await reads_of(db, partner)
    assert len(rows) == 1
    row = rows[0]
    assert (row["principal_kind"], str(row["principal_id"]), row["purpose"]) == (
        "PARTNER",
        partner["id"],
        "CITIZEN_LOOKUP",
    )
    assert [str(x) for x in row["result_ids"]] == [found.results[0].result.result_id]
    assert row["detail"] == {"by": "identity", "results": 1, "pending": 0}

    # A lookup that finds nothing is recorded too (who looked), with no result ids and no lookup factor.
    empty = await platform.publish.GetCitizenResults(
        ppb.GetCitizenResultsRequest(phone=person(9101).phone, date_of_birth="1985-03-15"), metadata=auth
    )
    assert not empty.results
    rows = await reads_of(db, partner)
    assert len(rows) == 2 and rows[1]["purpose"] == "CITIZEN_LOOKUP" and rows[1]["result_ids"] == []
    assert rows[1]["detail"] == {"by": "phone", "results": 0, "pending": 0}
    await assert_nothing_personal(db, platform, [9100, 9101])


async def test_a_qr_render_records_the_certificates_result(platform, database_url, db):
    partner = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    await platform.release(1, start=9200)
    event = (await platform.collect(partner["token"], start, 1))[0]
    await db.execute("DELETE FROM personal_data_reads WHERE principal_id = $1::uuid", partner["id"])

    image = await platform.publish.GetCertificateQr(
        ppb.GetCertificateQrRequest(certificate_id=event.certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_SVG),
        metadata=bearer(partner["token"]),
    )
    assert b"<svg" in image.image
    rows = await reads_of(db, partner)
    assert [(r["principal_kind"], r["purpose"], [str(x) for x in r["result_ids"]]) for r in rows] == [
        ("PARTNER", "QR_RENDER", [event.result.result_id])
    ]
    assert event.certificate.result_id == event.result.result_id
    # An unknown certificate is NOT_FOUND and was no read of anyone's data.
    try:
        await platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", format=ppb.QR_IMAGE_FORMAT_PNG),
            metadata=bearer(partner["token"]),
        )
        raise AssertionError("an unknown certificate rendered")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
    assert len(await reads_of(db, partner)) == 1
    await assert_nothing_personal(db, platform, [9200])


async def test_the_feed_records_one_row_per_delivered_batch_and_none_without_personal_data(platform, database_url, db):
    entitled = await new_partner(database_url, personal_data_access=True)
    plain = await new_partner(database_url, personal_data_access=False)
    start = await platform.head() + 1
    await platform.release(7, start=9300)
    # All fourteen published (seven registrations, seven results): one stream page can carry them all.
    while await platform.head() < start + 13:
        await asyncio.sleep(0.05)

    call = platform.publish.StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=start), metadata=bearer(entitled["token"])
    )
    messages = []
    try:
        while sum(len(m.events) for m in messages) < 14:
            message = await asyncio.wait_for(call.read(), 15)
            if message.events:
                messages.append(message)
                # Written before the message was sent: the row is there the moment it arrives.
                rows = await reads_of(db, entitled)
                assert len(rows) == len(messages)
    finally:
        call.cancel()
    rows = await reads_of(db, entitled)
    assert len(rows) == len(messages) == 1  # all were published before the stream began: one page
    for message, row in zip(messages, rows, strict=True):
        assert row["principal_kind"] == "PARTNER" and str(row["principal_id"]) == entitled["id"]
        assert row["purpose"] == "FEED_DELIVERY"
        results = [e for e in message.events if e.HasField("result")]
        assert [str(x) for x in row["result_ids"]] == [e.result.result_id for e in results]
        assert row["detail"] == {
            "from_position": message.events[0].position,
            "to_position": message.events[-1].position,
            "events": len(message.events),
            "pending_sample_ids": [e.sample.sample_id for e in message.events if e.HasField("sample")],
        }
        assert all(e.HasField("person") for e in message.events)

    events = await platform.collect(plain["token"], start, 7)
    assert len(events) == 7 and not any(e.HasField("person") or e.certificate.qr for e in events)
    assert await reads_of(db, plain) == []  # it received no personal data
    await assert_nothing_personal(db, platform, list(range(9300, 9307)))


async def test_heartbeats_are_no_reads(platform, database_url, db):
    partner = await new_partner(database_url, personal_data_access=True)
    head = await platform.head()
    call = platform.publish.StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=head + 1), metadata=bearer(partner["token"])
    )
    try:
        message = await asyncio.wait_for(call.read(), 5)  # FEED_HEARTBEAT_SECONDS is 1 in these tests
        assert not message.events
    finally:
        call.cancel()
    assert await reads_of(db, partner) == []
