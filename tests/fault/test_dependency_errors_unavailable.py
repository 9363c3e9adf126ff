"""Dependency failures answer UNAVAILABLE, never INTERNAL, and a committed call answers OK.

- A RecordResults whose COMMIT succeeded answers OK even when its connection fails on the way back to
  the pool (the errors production saw when Postgres stopped right after a COMMIT).
- A feed stream open when Postgres stops ends with UNAVAILABLE; a stream opened during the outage gets
  UNAVAILABLE; neither logs a traceback.
- GetTrustList during the outage: the full list is served from the in-memory snapshot (that is the
  design: verification keeps working), and an incremental request, which reads Postgres, gets UNAVAILABLE.
"""

import asyncio
import logging
import time
import uuid

import asyncpg
import grpc
import pytest

from services.common import migrate
from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import (
    REDIS_URL,
    bearer,
    make_principal,
    service_env,
    start_result_svc,
    start_verify_svc,
)
from tests.publish_svc.conftest import activate_new_key, new_partner, start_platform, stop_platform
from tests.result_svc.helpers import result, rid, sample, unique

BATCH = 5


def tracebacks(caplog) -> list[logging.LogRecord]:
    """Records the call guard logs for an unexpected error (INTERNAL, with a traceback)."""
    return [r for r in caplog.records if r.name == "covidtest.rpc" and r.exc_info]


# The two errors seen in production when the connection broke on its way back to the pool after COMMIT.
RELEASE_FAULTS = [
    pytest.param(lambda: asyncpg.exceptions.InterfaceError("connection is closed"), id="InterfaceError"),
    pytest.param(
        lambda: asyncpg.exceptions.InternalClientError("PoolConnectionHolder.release() failed"),
        id="InternalClientError",
    ),
]


@pytest.mark.parametrize("fault", RELEASE_FAULTS)
async def test_committed_record_results_answers_ok_when_release_fails(private_postgres, monkeypatch, fault):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    unit = await make_principal(dsn, Role.SAMPLER)
    lab = await make_principal(dsn, Role.LAB)
    running = await start_result_svc(service_env(dsn, AUTH_CACHE_SECONDS="60"))
    request_id = rid()
    raised: list[BaseException] = []
    original_release = asyncpg.pool.Pool.release

    async def failing_release(pool, connection, *, timeout=None):
        # Fails only the release that follows the real COMMIT of our RecordResults: its idempotency row
        # is visible on this connection, which is idle outside any transaction by now.
        committed = not raised and not connection.is_in_transaction()
        if committed:
            committed = bool(
                await connection.fetchval(
                    "SELECT count(*) FROM idempotency_keys WHERE method = 'RecordResults' AND request_id = $1",
                    request_id,
                )
            )
        await original_release(pool, connection, timeout=timeout)
        if committed:
            raised.append(fault())
            raise raised[-1]

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            items = [sample(unique("PC"), lab["id"], i) for i in range(BATCH)]
            barcodes = [i.sample_barcode for i in items]
            reply = await stub.RegisterSamples(
                pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=bearer(unit["token"]), timeout=10
            )
            assert reply.created_count == BATCH
            request = pb.RecordResultsRequest(
                request_id=request_id, results=[result(t.OUTCOME_NEGATIVE, sample_barcode=b) for b in barcodes]
            )
            monkeypatch.setattr(asyncpg.pool.Pool, "release", failing_release)
            recorded = await stub.RecordResults(request, metadata=bearer(lab["token"]), timeout=10)
            assert raised, "the fault was never injected"
            assert recorded.recorded_count == BATCH, recorded
            monkeypatch.setattr(asyncpg.pool.Pool, "release", original_release)
            # A retry with the same request id gets the same answer: nothing is recorded twice.
            again = await stub.RecordResults(request, metadata=bearer(lab["token"]), timeout=10)
            assert again == recorded
    finally:
        await running.stop(0)

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT count(r.id) AS results, count(o.id) AS events
               FROM samples s JOIN results r ON r.sample_id = s.id LEFT JOIN outbox o ON o.result_id = r.id
               WHERE s.barcode = ANY($1::text[])""",
            barcodes,
        )
        assert (row["results"], row["events"]) == (BATCH, BATCH), dict(row)
    finally:
        await conn.close()


async def read_until_error(call, timeout_s: float) -> grpc.aio.AioRpcError:
    """Read a stream until it ends with an error, within `timeout_s`; the error it ended with."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the stream did not end"
        try:
            message = await asyncio.wait_for(call.read(), remaining)
        except grpc.aio.AioRpcError as err:
            return err
        assert message is not grpc.aio.EOF, "the stream ended with OK"


async def test_feed_streams_answer_unavailable_while_postgres_is_down(private_postgres, caplog):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    caplog.set_level(logging.WARNING, logger="covidtest.rpc")
    platform = await start_platform(dsn, f"t{uuid.uuid4().hex[:12]}", REDIS_URL=REDIS_URL)
    try:
        platform.key = await activate_new_key(dsn, platform.env)
        platform.unit = await make_principal(dsn, Role.SAMPLER)
        platform.lab = await make_principal(dsn, Role.LAB)
        partner = await new_partner(dsn, personal_data_access=False)
        await platform.release(2, start=1)

        open_stream = platform.publish.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(partner["token"])
        )
        events: list = []
        deadline = time.monotonic() + 15
        while len(events) < 2:  # the stream is live and delivering before Postgres stops
            message = await asyncio.wait_for(open_stream.read(), max(0.01, deadline - time.monotonic()))
            assert message is not grpc.aio.EOF
            events += list(message.events)

        await asyncio.to_thread(private_postgres.stop, "immediate")
        # The open stream reads Postgres at least every second (safety poll, heartbeat): it must end,
        # and with UNAVAILABLE, so the partner retries.
        ended = await read_until_error(open_stream, 15)
        assert ended.code() == grpc.StatusCode.UNAVAILABLE, (ended.code(), ended.details())

        # Reconnects during the outage (the partner's credential is known, so it passes the guard).
        for _ in range(3):
            reconnect = platform.publish.StreamResultEvents(
                ppb.StreamResultEventsRequest(from_position=3), metadata=bearer(partner["token"])
            )
            refused = await read_until_error(reconnect, 15)
            assert refused.code() == grpc.StatusCode.UNAVAILABLE, (refused.code(), refused.details())
        assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]
    finally:
        await stop_platform(platform)


async def test_get_trust_list_while_postgres_is_down(private_postgres, caplog):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    caplog.set_level(logging.WARNING, logger="covidtest.rpc")
    platform = await start_platform(dsn, f"t{uuid.uuid4().hex[:12]}", REDIS_URL=REDIS_URL)
    verify_server = None
    try:
        platform.key = await activate_new_key(dsn, platform.env)
        device = await make_principal(dsn, Role.CHECKPOINT)
        verify_server = await start_verify_svc(platform.env)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel:
            stub = verify_service_pb2_grpc.VerifyServiceStub(channel)
            # The trust list is loaded (with the platform's own key) before the outage.
            deadline = time.monotonic() + 15
            while True:
                try:
                    full = await stub.GetTrustList(
                        vpb.GetTrustListRequest(), metadata=bearer(device["token"]), timeout=5
                    )
                    if full.version > 0 and full.added:
                        break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE, err  # not loaded yet
                assert time.monotonic() < deadline, "the trust list was never loaded"
                await asyncio.sleep(0.1)
            delta = await stub.GetTrustList(
                vpb.GetTrustListRequest(since_version=full.version), metadata=bearer(device["token"]), timeout=5
            )
            assert not delta.full

            await asyncio.to_thread(private_postgres.stop, "immediate")
            # The full list is answered from memory: a device that starts during the outage still verifies.
            during = await stub.GetTrustList(vpb.GetTrustListRequest(), metadata=bearer(device["token"]), timeout=5)
            assert during.full and during.version == full.version and len(during.added) == len(full.added)
            # A delta is computed from Postgres's change log: UNAVAILABLE, and the device keeps its list.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetTrustList(
                    vpb.GetTrustListRequest(since_version=full.version), metadata=bearer(device["token"]), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]
    finally:
        if verify_server is not None:
            await verify_server.stop(0)
        await stop_platform(platform)
