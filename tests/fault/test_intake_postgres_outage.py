"""A Postgres crash in the middle of intake batches: UNAVAILABLE to the client, nothing acknowledged lost,
nothing half-written visible, and the service recovers without a restart."""

import asyncio
import time

import grpc

from services.common import migrate
from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.conftest import bearer, make_principal, service_env, start_result_svc
from tests.result_svc.helpers import result, rid, sample, unique

BATCH = 50


async def test_postgres_crash_mid_batch_loses_nothing_acknowledged(private_postgres):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    unit = await make_principal(dsn, Role.SAMPLER)
    lab = await make_principal(dsn, Role.LAB)
    running = await start_result_svc(service_env(dsn, AUTH_CACHE_SECONDS="60"))
    acknowledged: list[list[str]] = []  # barcodes of batches the client was told are stored
    unanswered: list[list[str]] = []  # batches that failed: must be all or nothing
    codes: list[grpc.StatusCode] = []
    stop_after = 6
    crashed = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)

            async def writer(w: int):
                n = 0
                while not crashed.is_set() or n < 3:
                    items = [sample(unique(f"W{w}"), lab["id"], w * 10_000 + n * BATCH + i) for i in range(BATCH)]
                    barcodes = [i.sample_barcode for i in items]
                    n += 1
                    try:
                        reply = await stub.RegisterSamples(
                            pb.RegisterSamplesRequest(request_id=rid(), samples=items),
                            metadata=bearer(unit["token"]),
                            timeout=10,
                        )
                        assert reply.created_count == BATCH
                        results = await stub.RecordResults(
                            pb.RecordResultsRequest(
                                request_id=rid(),
                                results=[result(t.OUTCOME_NEGATIVE, sample_barcode=b) for b in barcodes],
                            ),
                            metadata=bearer(lab["token"]),
                            timeout=10,
                        )
                        assert results.recorded_count == BATCH
                        acknowledged.append(barcodes)
                    except grpc.aio.AioRpcError as err:
                        codes.append(err.code())
                        unanswered.append(barcodes)
                    if len(acknowledged) >= stop_after and not crashed.is_set():
                        crashed.set()
                        await asyncio.to_thread(private_postgres.stop, "immediate")

            await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(3))), 120)
            assert codes and set(codes) == {grpc.StatusCode.UNAVAILABLE}, codes

            # Still down: a new call fails fast with UNAVAILABLE, not a hang and not INTERNAL.
            started = time.monotonic()
            try:
                await stub.RegisterSamples(
                    pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("D"), lab["id"])]),
                    metadata=bearer(unit["token"]),
                    timeout=10,
                )
                raise AssertionError("a write succeeded while Postgres was down")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 5

            await asyncio.to_thread(private_postgres.start)
            # The same server recovers by itself: poll with a deadline until a write goes through.
            deadline = time.monotonic() + 30
            while True:
                try:
                    reply = await stub.RegisterSamples(
                        pb.RegisterSamplesRequest(
                            request_id=rid(), samples=[sample(unique("AFTER"), lab["id"], 99_999)]
                        ),
                        metadata=bearer(unit["token"]),
                        timeout=10,
                    )
                    assert reply.created_count == 1
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "result_svc did not recover after Postgres came back"
                    await asyncio.sleep(0.2)
    finally:
        await running.stop(0)

    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:

        async def stored(barcodes):
            return await conn.fetchrow(
                """SELECT count(DISTINCT s.id) AS samples, count(r.id) AS results, count(DISTINCT o.id) AS events
                   FROM samples s LEFT JOIN results r ON r.sample_id = s.id LEFT JOIN outbox o ON o.result_id = r.id
                   WHERE s.barcode = ANY($1::text[])""",
                barcodes,
            )

        for barcodes in acknowledged:
            row = await stored(barcodes)
            assert (row["samples"], row["results"], row["events"]) == (BATCH, BATCH, BATCH)
        for barcodes in unanswered:
            row = await stored(barcodes)
            # All or nothing per call: samples of a batch either all exist or none; results likewise,
            # and every stored result has its outbox event.
            assert row["samples"] in (0, BATCH) and row["results"] in (0, BATCH), dict(row)
            assert row["events"] == row["results"]
    finally:
        await conn.close()
    assert len(acknowledged) >= stop_after
