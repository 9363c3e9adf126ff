"""A lab records results only for pools sent to it: another lab's pool is refused and nothing is stored."""

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.result_svc.helpers import result, rid, sample, unique


async def _stored(db, pool: str) -> dict:
    """What the database holds for the pool and its members: results, outbox rows, states."""
    pool_row = await db.fetchrow("SELECT state, outcome, tested_at FROM pools WHERE barcode = $1", pool)
    members = await db.fetch(
        "SELECT s.id, s.state FROM samples s JOIN pools p ON p.id = s.pool_id WHERE p.barcode = $1", pool
    )
    ids = [m["id"] for m in members]
    return {
        "pool": dict(pool_row),
        "member_states": sorted(m["state"] for m in members),
        "results": await db.fetchval("SELECT count(*) FROM results WHERE sample_id = ANY($1::uuid[])", ids),
        "outbox": await db.fetchval(  # result events (registrations aside)
            "SELECT count(*) FROM outbox WHERE sample_id = ANY($1::uuid[]) AND kind <> 'SAMPLE_REGISTERED'", ids
        ),
    }


async def test_a_lab_cannot_record_a_pool_sent_to_another_lab(stub, sampler, lab, other_lab, db):
    pool = unique("POOL")
    items = [sample(unique("PS"), other_lab.id, 7100 + i, pool_barcode=pool) for i in range(3)]
    registered = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=sampler.auth
    )
    assert registered.created_count == 3
    before = await _stored(db, pool)
    assert before["results"] == 0 and before["outbox"] == 0 and before["pool"]["outcome"] is None

    for submission in (
        result(t.OUTCOME_NEGATIVE, pool_barcode=pool),
        result(t.OUTCOME_NEGATIVE, pool_barcode=pool, sampling_org_id=sampler.id),
    ):
        reply = await stub.RecordResults(
            pb.RecordResultsRequest(request_id=rid(), results=[submission]), metadata=lab.auth
        )
        assert reply.rejected_count == 1 and reply.recorded_count == 0 and reply.already_recorded_count == 0
        item = reply.results[0]
        assert item.status == pb.RECORDING_STATUS_REJECTED
        assert [(v.field, v.reason) for v in item.violations] == [("results[0].pool_barcode", "POOL_NOT_FOUND")]
        assert not item.samples
        assert await _stored(db, pool) == before  # nothing written: no result, no event, no state change

    # The lab the pool was sent to records it: the refusal above was about scope, not the pool.
    reply = await stub.RecordResults(
        pb.RecordResultsRequest(request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, pool_barcode=pool)]),
        metadata=other_lab.auth,
    )
    assert reply.recorded_count == 1 and len(reply.results[0].samples) == 3
    after = await _stored(db, pool)
    assert after["results"] == 3 and after["pool"]["outcome"] == "NEGATIVE"
