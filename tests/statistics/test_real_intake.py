"""The statistics of results that went through the real intake (RegisterSamples, RecordResults, AmendResult):
what the summary counts is what intake stores, pools included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.statistics.v1 import statistics_service_pb2 as pb
from services.gen.covidtest.statistics.v1 import statistics_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2
from tests.conftest import bearer, make_principal
from tests.result_svc.helpers import result, rid, sample, unique
from tests.statistics import dataset
from tests.statistics.conftest import refresh


async def test_intake_results_are_counted(database_url, result_server):
    unit = await make_principal(database_url, Role.SAMPLER)
    lab = await make_principal(database_url, Role.LAB)
    conn = await connect(database_url)
    try:
        health = bearer(await dataset.health_authority(conn, "24"))
    finally:
        await conn.close()
    pools = [unique("POOL"), unique("POOL")]
    registrations = [sample(unique("P"), lab["id"], n=i, pool_barcode=pools[i // 5]) for i in range(10)]
    singles = [unique("S") for _ in range(6)]
    registrations += [sample(b, lab["id"], n=10 + i) for i, b in enumerate(singles)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
        intake = result_service_pb2_grpc.ResultServiceStub(channel)
        registered = await intake.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=registrations), metadata=bearer(unit["token"])
        )
        assert registered.created_count == 16
        outcomes = [
            result(testing_pb2.OUTCOME_NEGATIVE, pool_barcode=pools[0]),
            result(testing_pb2.OUTCOME_POSITIVE, pool_barcode=pools[1]),
            *(result(testing_pb2.OUTCOME_POSITIVE, sample_barcode=b) for b in singles[:4]),
            *(result(testing_pb2.OUTCOME_NEGATIVE, sample_barcode=b) for b in singles[4:]),
        ]
        recorded = await intake.RecordResults(
            rpb.RecordResultsRequest(request_id=rid(), results=outcomes), metadata=bearer(lab["token"])
        )
        assert recorded.rejected_count == 0
        # One negative amended to positive: 5 positives in all.
        await intake.AmendResult(
            rpb.AmendResultRequest(
                request_id=rid(),
                sample_barcode=singles[4],
                outcome=testing_pb2.OUTCOME_POSITIVE,
                tested_at=result().tested_at,
                method="RT-PCR cobas",
                lab_reference="LIS-2",
                reason="transcription error",
            ),
            metadata=bearer(lab["token"]),
        )
        await refresh(database_url)

        statistics = statistics_service_pb2_grpc.StatisticsServiceStub(channel)
        today = datetime.now(UTC) + timedelta(hours=7)
        days = pb.DayRange(from_date=(today - timedelta(days=1)).date().isoformat(), to_date=today.date().isoformat())
        counts = await statistics.ListTestCounts(pb.ListTestCountsRequest(range=days), metadata=health)
        (row,) = [r for r in counts.rows if r.lab_organisation_id == lab["id"]]
        assert row.district_code == "213"
        # 5 members of the negative pool and 6 single samples; the positive pool's members await retests.
        assert (row.tests.value, row.positives.value, row.pools_tested.value) == (11, 5, 0)
        assert row.pools_positive.suppressed and row.pool_positivity.suppressed  # 2 pools, 1 positive
        assert (row.tests.suppressed, row.positives.suppressed, row.pools_tested.suppressed) == (False, False, True)
        assert row.positivity.value == 5 / 11
        turnaround = await statistics.ListTurnaround(pb.ListTurnaroundRequest(range=days), metadata=health)
        (row,) = [r for r in turnaround.rows if r.lab_organisation_id == lab["id"]]
        assert row.count.value == 11
        # Collected 3 h before the results were recorded (helpers.sample): the percentiles are about 3 h.
        assert 3 * 3600 - 60 <= row.p50.value.seconds <= row.p90.value.seconds <= 3 * 3600 + 120
