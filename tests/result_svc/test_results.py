"""RecordResults, AmendResult, WithdrawResult: pools, retests, corrections, scope, and the outbox."""

import grpc
import pytest

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.grpc_errors import error_reason, violations
from tests.result_svc.helpers import ago, result, rid, sample, unique


async def register(stub, org, items):
    reply = await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=org.auth)
    assert reply.created_count == len(items), reply
    return reply


async def record(stub, lab, *submissions):
    return await stub.RecordResults(
        pb.RecordResultsRequest(request_id=rid(), results=list(submissions)), metadata=lab.auth
    )


async def outbox(db, sample_ids):
    """The result events of these samples (each sample's SAMPLE_REGISTERED event, which precedes them, aside)."""
    return await db.fetch(
        "SELECT kind, result_id, sample_id, payload FROM outbox WHERE sample_id = ANY($1::uuid[])"
        " AND kind <> 'SAMPLE_REGISTERED' ORDER BY id",
        list(sample_ids),
    )


async def register_pool(stub, sampler, lab, size=10, start=0):
    pool = unique("POOL")
    reply = await register(
        stub, sampler, [sample(unique("PM"), lab.id, start + i, pool_barcode=pool) for i in range(size)]
    )
    return pool, [r.sample_id for r in reply.results], [r.sample_barcode for r in reply.results]


async def test_negative_pool_of_ten_releases_ten_negative_results(stub, sampler, lab, db):
    pool, sample_ids, _ = await register_pool(stub, sampler, lab, start=1000)
    reply = await record(stub, lab, result(t.OUTCOME_NEGATIVE, pool_barcode=pool))
    item = reply.results[0]
    assert item.status == pb.RECORDING_STATUS_RECORDED and len(item.samples) == 10
    assert {s.sample_id for s in item.samples} == set(sample_ids)
    assert {(s.sample_state, s.result_state, s.result_version) for s in item.samples} == {
        (t.SAMPLE_STATE_RESULTED, t.RESULT_STATE_RELEASED, 1)
    }
    events = await outbox(db, sample_ids)
    assert len(events) == 10 and {e["kind"] for e in events} == {"RELEASED"}
    assert {str(e["result_id"]) for e in events} == {s.result_id for s in item.samples}
    rows = await db.fetch("SELECT outcome, state FROM results WHERE sample_id = ANY($1::uuid[])", sample_ids)
    assert {(r["outcome"], r["state"]) for r in rows} == {("NEGATIVE", "RELEASED")} and len(rows) == 10


async def test_positive_pool_requires_individual_retests_then_a_retest_is_released(stub, sampler, lab, db):
    pool, sample_ids, barcodes = await register_pool(stub, sampler, lab, start=2000)
    reply = await record(stub, lab, result(t.OUTCOME_POSITIVE, pool_barcode=pool, ct_value=27.5))
    members = reply.results[0].samples
    assert len(members) == 10
    assert {(m.sample_state, m.result_state) for m in members} == {
        (t.SAMPLE_STATE_RETEST_REQUIRED, t.RESULT_STATE_RETEST_REQUIRED)
    }
    assert {e["kind"] for e in await outbox(db, sample_ids)} == {"POOL_POSITIVE_RETEST_REQUIRED"}

    # A pooled member cannot get an individual result; its person gets a new, linked sample.
    reply = await record(stub, lab, result(t.OUTCOME_NEGATIVE, sample_barcode=barcodes[3]))
    assert [v.reason for v in reply.results[0].violations] == ["SAMPLE_IS_POOLED"]
    retest = sample(unique("RT"), lab.id, 2003, retest_of_sample_barcode=barcodes[3])
    retest_id = (await register(stub, sampler, [retest])).results[0].sample_id
    reply = await record(stub, lab, result(t.OUTCOME_POSITIVE, sample_barcode=retest.sample_barcode, ct_value=24.0))
    assert reply.results[0].samples[0].result_state == t.RESULT_STATE_RELEASED
    assert [e["kind"] for e in await outbox(db, [retest_id])] == ["RELEASED"]

    original = (await stub.GetSample(pb.GetSampleRequest(sample_id=sample_ids[3]), metadata=sampler.auth)).sample
    assert list(original.retest_sample_ids) == [retest_id] and original.pool_barcode == pool
    again = (await stub.GetSample(pb.GetSampleRequest(sample_id=retest_id), metadata=lab.auth)).sample
    assert again.retest_of_sample_id == sample_ids[3] and again.retest_of_sample_barcode == barcodes[3]
    assert again.results[0].outcome == t.OUTCOME_POSITIVE and again.state == t.SAMPLE_STATE_RESULTED


async def test_retest_must_follow_a_sample_needing_one_of_the_same_person(stub, sampler, lab):
    first = sample(unique("X"), lab.id, 3000)
    await register(stub, sampler, [first])
    too_early = sample(unique("RT"), lab.id, 3000, retest_of_sample_barcode=first.sample_barcode)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[too_early]), metadata=sampler.auth
    )
    assert [v.reason for v in reply.results[0].violations] == ["RETEST_OF_STATE_INVALID"]
    await record(stub, lab, result(t.OUTCOME_INVALID_SAMPLE, sample_barcode=first.sample_barcode))
    someone_else = sample(unique("RT"), lab.id, 3001, retest_of_sample_barcode=first.sample_barcode)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[someone_else]), metadata=sampler.auth
    )
    assert [v.reason for v in reply.results[0].violations] == ["RETEST_PERSON_MISMATCH"]


async def test_inconclusive_pool_asks_every_member_for_a_new_sample(stub, sampler, lab):
    pool, _, _ = await register_pool(stub, sampler, lab, size=3, start=3100)
    reply = await record(stub, lab, result(t.OUTCOME_INCONCLUSIVE, pool_barcode=pool))
    assert {m.sample_state for m in reply.results[0].samples} == {t.SAMPLE_STATE_RESAMPLE_REQUIRED}
    late = sample(unique("LATE"), lab.id, 3199, pool_barcode=pool)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[late]), metadata=sampler.auth
    )
    assert [v.reason for v in reply.results[0].violations] == ["POOL_CLOSED"]


async def test_recording_errors_unknown_other_lab_already_resulted_and_replay(stub, sampler, lab, other_lab, db):
    mine = sample(unique("S"), lab.id, 4000)
    theirs = sample(unique("S"), other_lab.id, 4001)
    await register(stub, sampler, [mine, theirs])
    first = await record(stub, lab, result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode))
    assert first.recorded_count == 1
    reply = await record(
        stub,
        lab,
        result(t.OUTCOME_NEGATIVE, sample_barcode="NO-SUCH-BARCODE"),
        result(t.OUTCOME_NEGATIVE, sample_barcode=theirs.sample_barcode),
        result(t.OUTCOME_POSITIVE, sample_barcode=mine.sample_barcode),
        result(t.OUTCOME_NEGATIVE, pool_barcode="NO-SUCH-POOL"),
        result(t.OUTCOME_UNSPECIFIED, sample_barcode=mine.sample_barcode, tested_at=ago(minutes=-30)),
    )
    reasons = [[v.reason for v in r.violations] for r in reply.results]
    assert reasons[0] == ["SAMPLE_NOT_FOUND"]
    assert reasons[1] == ["SAMPLE_ASSIGNED_TO_OTHER_LAB"]
    assert reasons[2] == ["SAMPLE_ALREADY_RESULTED"]
    assert reasons[3] == ["POOL_NOT_FOUND"]
    assert set(reasons[4]) == {"FIELD_REQUIRED", "TIME_IN_FUTURE"}
    assert reply.rejected_count == 5 and reply.recorded_count == 0
    assert len(await outbox(db, [first.results[0].samples[0].sample_id])) == 1


async def test_the_same_result_sent_again_is_already_recorded_not_duplicated(stub, sampler, lab, db):
    mine = sample(unique("S"), lab.id, 4100)
    await register(stub, sampler, [mine])
    submission = result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode, ct_value=31.25)
    first = await record(stub, lab, submission)
    again = await record(stub, lab, submission)  # a new request id: a lab re-sending its export
    assert again.results[0].status == pb.RECORDING_STATUS_ALREADY_RECORDED
    assert again.results[0].samples[0].result_id == first.results[0].samples[0].result_id
    assert len(await outbox(db, [first.results[0].samples[0].sample_id])) == 1


async def test_the_same_target_twice_in_one_call_in_any_spelling_is_refused_once(stub, sampler, lab, db):
    mine = sample(unique("S"), lab.id, 4150)
    await register(stub, sampler, [mine])
    pool, _, _ = await register_pool(stub, sampler, lab, size=3, start=4160)
    reply = await record(
        stub,
        lab,
        result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode),
        result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode, sampling_org_id=sampler.id),
        result(t.OUTCOME_NEGATIVE, pool_barcode=pool, sampling_org_id=sampler.id),
        result(t.OUTCOME_NEGATIVE, pool_barcode=pool),
    )
    assert [r.status for r in reply.results] == [
        pb.RECORDING_STATUS_RECORDED,
        pb.RECORDING_STATUS_REJECTED,
        pb.RECORDING_STATUS_RECORDED,
        pb.RECORDING_STATUS_REJECTED,
    ]
    assert [(v.field, v.reason) for v in reply.results[1].violations] == [
        ("results[1].sample_barcode", "DUPLICATE_IN_REQUEST")
    ]
    assert [(v.field, v.reason) for v in reply.results[3].violations] == [
        ("results[3].pool_barcode", "DUPLICATE_IN_REQUEST")
    ]
    assert len(await outbox(db, [reply.results[0].samples[0].sample_id])) == 1


async def test_result_before_collection_and_ct_on_antigen_are_refused(stub, sampler, lab):
    naat = sample(unique("S"), lab.id, 4200)
    rat = sample(unique("S"), lab.id, 4201, test_type=t.TEST_TYPE_RAPID_ANTIGEN, rat_device_id="1232")
    await register(stub, sampler, [naat, rat])
    reply = await record(
        stub,
        lab,
        result(t.OUTCOME_NEGATIVE, sample_barcode=naat.sample_barcode, tested_at=ago(hours=5)),
        result(t.OUTCOME_NEGATIVE, sample_barcode=rat.sample_barcode, ct_value=20.0),
    )
    assert [v.reason for v in reply.results[0].violations] == ["TESTED_BEFORE_COLLECTED"]
    assert [v.reason for v in reply.results[1].violations] == ["FIELD_NOT_ALLOWED"]


async def test_amend_keeps_the_old_version_superseded_and_emits_one_event(stub, sampler, lab, db):
    mine = sample(unique("A"), lab.id, 5000)
    sample_id = (await register(stub, sampler, [mine])).results[0].sample_id
    first = await record(stub, lab, result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode))
    old_result_id = first.results[0].samples[0].result_id
    amend = pb.AmendResultRequest(
        request_id=rid(),
        sample_barcode=mine.sample_barcode,
        outcome=t.OUTCOME_POSITIVE,
        tested_at=ago(minutes=50),
        method="RT-PCR cobas",
        ct_value=22.0,
        lab_reference="LIS-1b",
        reason="transcription error in LIS export",
    )
    reply = await stub.AmendResult(amend, metadata=lab.auth)
    assert reply.superseded_result_id == old_result_id
    assert reply.result.version == 2 and reply.result.state == t.RESULT_STATE_RELEASED
    assert reply.result.outcome == t.OUTCOME_POSITIVE and reply.result.amendment_reason == amend.reason
    assert await stub.AmendResult(amend, metadata=lab.auth) == reply  # idempotent replay
    versions = (await stub.GetSample(pb.GetSampleRequest(sample_id=sample_id), metadata=lab.auth)).sample.results
    assert [(v.version, v.state) for v in versions] == [(2, t.RESULT_STATE_RELEASED), (1, t.RESULT_STATE_SUPERSEDED)]
    events = await outbox(db, [sample_id])
    assert [e["kind"] for e in events] == ["RELEASED", "AMENDED"]
    assert events[1]["payload"]["previous_result_id"] == old_result_id

    amend.request_id = rid()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AmendResult(amend, metadata=lab.auth)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(err.value) == "AMENDMENT_NO_CHANGE"


async def test_withdraw_marks_the_current_version_and_ends_the_sample(stub, sampler, lab, db):
    mine = sample(unique("W"), lab.id, 5100)
    sample_id = (await register(stub, sampler, [mine])).results[0].sample_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.WithdrawResult(
            pb.WithdrawResultRequest(
                request_id=rid(), sample_barcode=mine.sample_barcode, reason=t.WITHDRAWAL_REASON_SAMPLE_MIX_UP
            ),
            metadata=lab.auth,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(err.value) == "SAMPLE_NOT_RESULTED"
    await record(stub, lab, result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode))
    reply = await stub.WithdrawResult(
        pb.WithdrawResultRequest(
            request_id=rid(), sample_barcode=mine.sample_barcode, reason=t.WITHDRAWAL_REASON_SAMPLE_MIX_UP
        ),
        metadata=lab.auth,
    )
    assert reply.result.state == t.RESULT_STATE_WITHDRAWN and reply.sample_state == t.SAMPLE_STATE_WITHDRAWN
    assert reply.result.withdrawal_reason == t.WITHDRAWAL_REASON_SAMPLE_MIX_UP
    assert [e["kind"] for e in await outbox(db, [sample_id])] == ["RELEASED", "WITHDRAWN"]
    for call, request in (
        (
            stub.WithdrawResult,
            pb.WithdrawResultRequest(
                request_id=rid(), sample_barcode=mine.sample_barcode, reason=t.WITHDRAWAL_REASON_LAB_ERROR
            ),
        ),
        (
            stub.AmendResult,
            pb.AmendResultRequest(
                request_id=rid(),
                sample_barcode=mine.sample_barcode,
                outcome=t.OUTCOME_POSITIVE,
                tested_at=ago(minutes=5),
                reason="x",
            ),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=lab.auth)
        assert error_reason(err.value) == "SAMPLE_WITHDRAWN"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.WithdrawResult(
            pb.WithdrawResultRequest(
                request_id=rid(), sample_barcode=mine.sample_barcode, reason=t.WITHDRAWAL_REASON_OTHER
            ),
            metadata=lab.auth,
        )
    assert violations(err.value) == [("reason_text", "FIELD_REQUIRED")]


async def test_other_organisations_cannot_touch_or_see_a_sample(stub, sampler, other_sampler, lab, other_lab):
    mine = sample(unique("X"), lab.id, 6000)
    sample_id = (await register(stub, sampler, [mine])).results[0].sample_id
    await record(stub, lab, result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AmendResult(
            pb.AmendResultRequest(
                request_id=rid(),
                sample_barcode=mine.sample_barcode,
                outcome=t.OUTCOME_POSITIVE,
                tested_at=ago(minutes=5),
                reason="x",
            ),
            metadata=other_lab.auth,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for org in (other_sampler, other_lab):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetSample(pb.GetSampleRequest(sample_id=sample_id), metadata=org.auth)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListResults(pb.ListResultsRequest(page_size=1000), metadata=org.auth)
        assert sample_id not in {r.sample_id for r in listed.results}
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a lab credential cannot register samples
        await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=[mine]), metadata=lab.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_outbox_holds_exactly_one_event_per_state_change(stub, sampler, lab, db):
    pool, pool_ids, _ = await register_pool(stub, sampler, lab, size=4, start=7000)
    single = sample(unique("O"), lab.id, 7100)
    single_id = (await register(stub, sampler, [single])).results[0].sample_id
    request = pb.RecordResultsRequest(
        request_id=rid(),
        results=[
            result(t.OUTCOME_NEGATIVE, pool_barcode=pool),
            result(t.OUTCOME_NEGATIVE, sample_barcode=single.sample_barcode),
        ],
    )
    await stub.RecordResults(request, metadata=lab.auth)
    await stub.RecordResults(request, metadata=lab.auth)  # replay: no new event
    await stub.AmendResult(
        pb.AmendResultRequest(
            request_id=rid(),
            sample_barcode=single.sample_barcode,
            outcome=t.OUTCOME_INCONCLUSIVE,
            tested_at=ago(minutes=5),
            reason="control failed",
        ),
        metadata=lab.auth,
    )
    events = await outbox(db, pool_ids + [single_id])
    by_sample = {}
    for e in events:
        by_sample.setdefault(str(e["sample_id"]), []).append(e["kind"])
    assert by_sample == {**{i: ["RELEASED"] for i in pool_ids}, single_id: ["RELEASED", "AMENDED"]}
    changes = await db.fetchval(
        "SELECT count(*) FROM results WHERE sample_id = ANY($1::uuid[])", pool_ids + [single_id]
    )
    assert len(events) == changes  # one event per result version written
