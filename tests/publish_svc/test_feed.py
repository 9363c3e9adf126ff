"""The relay and the feed over real gRPC: certificates, revocations, order, resume, cursors, status."""

import asyncio
import random
import time
from datetime import timedelta

import grpc
import pytest

from services.common.cache import create_client
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.hcert import keys as hkeys
from services.registry.certificate_status import StatusCache
from tests.conftest import REDIS_URL, bearer
from tests.grpc_errors import error_reason
from tests.hcert_independent import assert_schema_valid, decode_and_verify
from tests.publish_svc.conftest import new_partner
from tests.result_svc.helpers import ago, rid

REQUIRED_TEST_FIELDS = {"tg", "tt", "sc", "tr", "tc", "co", "is", "ci"}


async def test_released_results_reach_the_feed_with_verifiable_certificates(platform, database_url, db):
    partner = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    barcodes = await platform.release(3, start=100)
    # Registration first ("result pending": the sample, no result, no certificate), then the results.
    everything = await platform.collect(partner["token"], start, 6, pending=True)
    assert [e.position for e in everything] == list(range(start, start + 6))
    registered, events = everything[:3], everything[3:]
    assert {e.kind for e in registered} == {t.RESULT_EVENT_KIND_SAMPLE_REGISTERED}
    assert {e.sample.sample_barcode for e in registered} == set(barcodes)
    assert all(e.sample.state == t.SAMPLE_STATE_REGISTERED and e.sample.lab_org_id == platform.lab["id"]
               for e in registered)  # fmt: skip
    assert not any(e.HasField("result") or e.HasField("certificate") for e in registered)
    assert all(e.person.date_of_birth == "1985-03-14" for e in registered)  # an entitled partner
    assert {e.result.sample_barcode for e in events} == set(barcodes)
    key_der = platform.key.certificate_der
    for event in events:
        assert event.kind == t.RESULT_EVENT_KIND_RELEASED and event.result.state == t.RESULT_STATE_RELEASED
        assert event.certificate.status == c.CERTIFICATE_STATUS_VALID
        assert event.certificate.kid == hkeys.kid_of(key_der) and len(event.person_key) == 64
        decoded = decode_and_verify(event.certificate.qr, key_der)
        protected, claims = decoded["header"], decoded["claims"]
        assert protected[4] == hkeys.kid_of(key_der)
        assert_schema_valid(claims[-260][1])
        assert claims[1] == "VN" and claims[4] > claims[6]
        dcc = claims[-260][1]
        entry = dcc["t"][0]
        assert REQUIRED_TEST_FIELDS <= set(entry)
        assert entry["ci"] == event.certificate.certificate_id and entry["tr"] == "260415000"
        assert entry["tt"] == "LP6464-4" and entry["tg"] == "840539006" and entry["co"] == "VN"
        assert dcc["dob"] == event.person.date_of_birth == "1985-03-14"
        assert dcc["nam"]["fn"] == "Nguyễn" and dcc["nam"]["fnt"] == "NGUYEN" and dcc["nam"]["gnt"] == "VAN<AN"
    certificates = await db.fetchval(
        "SELECT count(*) FROM certificates c JOIN results r ON r.id = c.result_id JOIN samples s ON s.id = r.sample_id "
        "WHERE s.barcode = ANY($1::text[])",
        barcodes,
    )
    assert certificates == 3


async def test_partner_without_personal_data_gets_only_a_pseudonymous_key(platform, database_url):
    """Neither the person nor the QR text (its HC1 payload holds names and the birth date): the
    certificate's id, status, validity, key id and result id only."""
    plain = await new_partner(database_url, personal_data_access=False)
    other = await new_partner(database_url, personal_data_access=False)
    entitled = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    await platform.release(1, start=200)
    mine = (await platform.collect(plain["token"], start, 1))[0]
    theirs = (await platform.collect(other["token"], start, 1))[0]
    full = (await platform.collect(entitled["token"], start, 1))[0]
    assert not mine.HasField("person") and mine.HasField("certificate") and mine.certificate.qr == ""
    assert full.HasField("person") and full.certificate.qr.startswith("HC1:")
    expected = c.Certificate()
    expected.CopyFrom(full.certificate)
    expected.ClearField("qr")
    assert mine.certificate == expected  # everything else about the certificate is there
    assert mine.certificate.certificate_id and mine.certificate.kid and mine.certificate.result_id
    assert mine.certificate.status == c.CERTIFICATE_STATUS_VALID and mine.certificate.HasField("expires_at")
    assert mine.result == full.result
    assert mine.person_key != theirs.person_key  # keys are per partner: not linkable across partners


async def test_an_event_is_published_at_or_after_its_commit(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    start = await platform.head() + 1
    await platform.release(5, start=250)  # one commit; the relay takes them within milliseconds
    events = await platform.collect(partner["token"], start, 5)
    for event in events:
        committed, published = event.committed_at.ToDatetime(), event.published_at.ToDatetime()
        assert published >= committed, (event.position, committed, published)
        assert published - committed < timedelta(seconds=30)  # its own moment, not a placeholder


async def test_pool_positive_gives_events_without_certificates(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    start = await platform.head() + 1
    await platform.release(4, start=300, outcome=t.OUTCOME_POSITIVE, pool=True)
    events = await platform.collect(partner["token"], start, 4)
    assert {e.kind for e in events} == {t.RESULT_EVENT_KIND_POOL_POSITIVE_RETEST_REQUIRED}
    assert not any(e.HasField("certificate") for e in events)
    assert {e.result.state for e in events} == {t.RESULT_STATE_RETEST_REQUIRED}


async def test_amendment_and_withdrawal_revoke_certificates_in_postgres_and_redis(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)  # it decodes the QR below
    start = await platform.head() + 1
    amended, withdrawn = await platform.release(2, start=400)
    released = await platform.collect(partner["token"], start, 2)
    first_uvci = {e.result.sample_barcode: e.certificate.certificate_id for e in released}
    lab = bearer(platform.lab["token"])
    await platform.results.AmendResult(
        rpb.AmendResultRequest(
            request_id=rid(),
            sample_barcode=amended,
            outcome=t.OUTCOME_POSITIVE,
            tested_at=ago(minutes=30),
            method="RT-PCR",
            reason="plate swap corrected",
        ),
        metadata=lab,
    )
    await platform.results.WithdrawResult(
        rpb.WithdrawResultRequest(request_id=rid(), sample_barcode=withdrawn, reason=t.WITHDRAWAL_REASON_SAMPLE_MIX_UP),
        metadata=lab,
    )
    changes = await platform.collect(partner["token"], max(e.position for e in released) + 1, 2)
    by_kind = {e.kind: e for e in changes}
    amend_event = by_kind[t.RESULT_EVENT_KIND_AMENDED]
    assert amend_event.revoked_certificate_id == first_uvci[amended]
    assert amend_event.certificate.certificate_id not in first_uvci.values()
    claims = decode_and_verify(amend_event.certificate.qr, platform.key.certificate_der)["claims"]
    assert claims[-260][1]["t"][0]["tr"] == "260373001"  # the corrected, positive result
    withdraw_event = by_kind[t.RESULT_EVENT_KIND_WITHDRAWN]
    assert withdraw_event.revoked_certificate_id == first_uvci[withdrawn]
    assert not withdraw_event.HasField("certificate")

    client = create_client(REDIS_URL)
    cache = StatusCache(client, platform.redis_prefix)
    try:
        deadline = time.monotonic() + 5
        while True:
            statuses = [await cache.get(u) for u in first_uvci.values()]
            if all(s is not None and s.status == "REVOKED" for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(0.05)
        assert {s.version for s in statuses} == {2}
        new = await cache.get(amend_event.certificate.certificate_id)
        assert new is not None and (new.status, new.version) == ("VALID", 1)
        keys = [k async for k in client.scan_iter(match=f"{platform.redis_prefix}:*")]
        assert keys and not any(u.encode() in k for u in first_uvci.values() for k in keys)  # hashed keys only
    finally:
        await client.aclose()


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_writers_never_make_a_consumer_miss_or_repeat_an_event(platform, database_url, seed, db):
    """Writers commit in random interleavings while a consumer streams: positions are gapless, each once."""
    rng = random.Random(seed)
    partner = await new_partner(database_url, personal_data_access=False)
    start = await platform.head() + 1
    writers, per_writer = 6, 5
    expected = writers * per_writer * 2  # each release: its sample's registration, then its result
    received: list = []

    async def consume():
        call = platform.publish.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=start), metadata=bearer(partner["token"])
        )
        try:
            while len(received) < expected:
                message = await asyncio.wait_for(call.read(), 20)
                received.extend(message.events)
                await asyncio.sleep(rng.random() * 0.01)
        finally:
            call.cancel()

    async def write(w: int):
        for i in range(per_writer):
            await asyncio.sleep(rng.random() * 0.02)
            await platform.release(1, start=10_000 * (seed + 1) + 100 * w + i)

    consumer = asyncio.create_task(consume())
    await asyncio.gather(*(write(w) for w in range(writers)))
    await asyncio.wait_for(consumer, 30)
    positions = [e.position for e in received]
    assert positions == list(range(start, start + expected)), positions
    uvcis = [e.certificate.certificate_id for e in received if e.kind == t.RESULT_EVENT_KIND_RELEASED]
    assert len(set(uvcis)) == len(uvcis) == expected // 2
    duplicated = await db.fetchval(
        "SELECT count(*) FROM (SELECT result_id FROM certificates GROUP BY result_id HAVING count(*) > 1) d"
    )
    assert duplicated == 0


async def test_consumer_resumes_after_its_acknowledged_position(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    auth = bearer(partner["token"])
    start = await platform.head() + 1
    await platform.release(4, start=600)
    # Every position counts here, the four registrations as much as the four results.
    received = await platform.collect(partner["token"], start, 8, pending=True)  # then the consumer disconnects
    assert [e.position for e in received] == list(range(start, start + 8))
    head = start + 7
    processed = start + 1  # it had durably processed two events when it went away
    ack = await platform.publish.AckResultEvents(
        ppb.AckResultEventsRequest(request_id=rid(), position=processed), metadata=auth
    )
    assert ack.acknowledged_position == processed
    back = await platform.publish.AckResultEvents(
        ppb.AckResultEventsRequest(request_id=rid(), position=1), metadata=auth
    )
    assert back.acknowledged_position == processed  # never moves back
    resumed = await platform.collect(partner["token"], 0, 2, pending=True)  # 0: resume after the cursor
    assert [e.position for e in resumed] == [processed + 1, processed + 2]  # at least once: seen again
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.AckResultEvents(
            ppb.AckResultEventsRequest(request_id=rid(), position=head + 100), metadata=auth
        )
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.collect(partner["token"], head + 50, 1)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_idle_stream_sends_heartbeats_with_the_head(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    head = await platform.head()
    call = platform.publish.StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=head + 1), metadata=bearer(partner["token"])
    )
    try:
        message = await asyncio.wait_for(call.read(), 5)  # FEED_HEARTBEAT_SECONDS is 1 in these tests
        assert not message.events and message.head_position >= head
    finally:
        call.cancel()


async def test_stream_limit_per_partner(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    head = await platform.head()
    calls = [
        platform.publish.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=head + 1), metadata=bearer(partner["token"])
        )
        for _ in range(5)
    ]
    try:
        outcomes = []
        for call in calls:
            try:
                await asyncio.wait_for(call.read(), 3)
                outcomes.append("open")
            except grpc.aio.AioRpcError as err:
                outcomes.append(error_reason(err))
        assert outcomes.count("open") == 4 and outcomes.count("STREAM_LIMIT_EXCEEDED") == 1
    finally:
        for call in calls:
            call.cancel()


async def test_feed_status_scopes_partners_and_reports_lag(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=False)
    other = await new_partner(database_url, personal_data_access=False)
    await platform.release(1, start=700)
    mine = await platform.publish.GetFeedStatus(ppb.GetFeedStatusRequest(), metadata=bearer(partner["token"]))
    assert [p.partner_id for p in mine.partners] == [partner["id"]]
    assert mine.partners[0].lag_events == mine.head_position and mine.partners[0].lag.ToMilliseconds() > 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetFeedStatus(
            ppb.GetFeedStatusRequest(partner_id=other["id"]), metadata=bearer(partner["token"])
        )
    assert error_reason(err.value) == "SCOPE_NOT_ALLOWED"
    everyone = await platform.publish.GetFeedStatus(
        ppb.GetFeedStatusRequest(), metadata=bearer(platform.operator["token"])
    )
    assert {partner["id"], other["id"]} <= {p.partner_id for p in everyone.partners}


async def test_a_consumer_that_stops_reading_holds_the_stream_back(platform, database_url, monkeypatch):
    """HTTP/2 flow control reaches the feed: while the client reads nothing, the server stops fetching
    pages instead of buffering the whole backlog; reading again delivers every event, in order."""
    from services.publish_svc import feed, repository

    pages = []
    real_feed_page = repository.feed_page

    async def counting_feed_page(pool, from_position, limit):  # the real query, counted
        rows = await real_feed_page(pool, from_position, limit)
        if from_position >= start and rows:
            pages.append(from_position)
        return rows

    partner = await new_partner(database_url, personal_data_access=True)
    start = await platform.head() + 1
    backlog = 20 * feed.PAGE
    for batch in range(backlog // 1000):
        await platform.release(1000, start=1_000_000 + 1000 * batch)
    deadline = time.monotonic() + 60
    while await platform.head() < start + backlog - 1:  # the relay signs and publishes the backlog
        assert time.monotonic() < deadline, "the relay did not publish the backlog"
        await asyncio.sleep(0.2)
    monkeypatch.setattr(repository, "feed_page", counting_feed_page)

    # A client that does not grow its receive window (no BDP probing): what it has not read stays small.
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{platform.publish_server.port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    call = publish_service_pb2_grpc.PublishServiceStub(channel).StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=start), metadata=bearer(partner["token"])
    )
    try:
        received = list((await asyncio.wait_for(call.read(), 10)).events)
        # Unthrottled, the server would fetch all 20 pages within a fraction of a second; watch it for
        # 3 s while the client reads nothing (it holds back at about two: one sent, one being written).
        watch_until = time.monotonic() + 3
        while time.monotonic() < watch_until:
            assert len(pages) < backlog // feed.PAGE // 2, f"the server fetched {len(pages)} pages unread"
            await asyncio.sleep(0.05)
        held_back = len(pages)
        while len(received) < backlog:
            received += (await asyncio.wait_for(call.read(), 10)).events
    finally:
        call.cancel()
        await channel.close()
    assert [e.position for e in received[:backlog]] == list(range(start, start + backlog))
    assert held_back < len(pages) == backlog // feed.PAGE
