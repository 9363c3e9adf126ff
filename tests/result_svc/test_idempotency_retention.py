"""Idempotency rows are kept for IDEMPOTENCY_RETENTION_HOURS, then pruned by result_svc."""

import asyncio
import logging
import time
import uuid
from datetime import timedelta

import grpc
import pytest

from services.common.auth import Role
from services.common.config import ConfigError, load
from services.common.idempotency import Pruner, prune
from services.common.runtime import start_service
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.result_svc import __main__ as result_process
from services.result_svc.config import ResultConfig
from tests.conftest import bearer, make_principal, result_svc_env, service_env
from tests.pg_refusal import refusing
from tests.result_svc.helpers import rid, sample, unique


async def test_prune_deletes_only_rows_past_the_retention(db):
    principal = str(uuid.uuid4())
    await db.executemany(
        """INSERT INTO idempotency_keys (principal_id, method, request_id, request_hash, response, created_at)
           VALUES ($1, 'M', $2, '\\x00', '\\x00', now() - $3::interval)""",
        [(principal, f"old{i}", timedelta(days=8)) for i in range(7)]
        + [(principal, f"new{i}", timedelta(days=6)) for i in range(2)],
    )
    assert await prune(db, timedelta(days=7), batch=3) == 7  # three statements: 3 + 3 + 1
    left = await db.fetch("SELECT request_id FROM idempotency_keys WHERE principal_id = $1 ORDER BY 1", principal)
    assert [r["request_id"] for r in left] == ["new0", "new1"]


async def test_pruning_survives_postgres_refusing_and_retries(db, caplog):
    caplog.set_level(logging.WARNING, logger="covidtest.idempotency")
    principal = str(uuid.uuid4())
    await db.execute(
        """INSERT INTO idempotency_keys (principal_id, method, request_id, request_hash, response, created_at)
           VALUES ($1, 'M', 'old', '\\x00', '\\x00', now() - interval '8 days')""",
        principal,
    )
    pruner = Pruner(db, timedelta(days=7))
    pruner.every_s = 0.05
    task = asyncio.create_task(pruner.run())
    try:
        async with refusing(db, "idempotency_keys", "DELETE"):
            deadline = time.monotonic() + 10
            while not any(
                getattr(r, "fields", {}).get("error") == "ReadOnlySQLTransactionError" for r in caplog.records
            ):
                assert not task.done(), "the pruner ended on a Postgres error"
                assert time.monotonic() < deadline, "the refused prune was not reported"
                await asyncio.sleep(0.02)  # polling with a deadline
        deadline = time.monotonic() + 10
        while await _idempotency_rows(db, principal):
            assert not task.done(), "the pruner ended on a Postgres error"
            assert time.monotonic() < deadline, "pruning did not resume once Postgres accepted it again"
            await asyncio.sleep(0.02)
    finally:
        pruner.stop()
        await asyncio.wait_for(task, 5)


async def _idempotency_rows(db, principal_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1", principal_id)


async def test_result_svc_forgets_a_request_id_after_the_retention(database_url, db):
    sampler = await make_principal(database_url, Role.SAMPLER)
    lab = await make_principal(database_url, Role.LAB)
    retention_hours = 0.0005  # 1.8 s; the server prunes every 0.45 s
    config = load(
        ResultConfig, result_svc_env(service_env(database_url, IDEMPOTENCY_RETENTION_HOURS=str(retention_hours)))
    )
    running = await start_service("result_svc", config, result_process.build, serve_metrics_port=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            request = pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("K"), lab["id"])])
            first = await stub.RegisterSamples(request, metadata=bearer(sampler["token"]))
            assert first.created_count == 1
            assert await _idempotency_rows(db, sampler["id"]) == 1
            deadline = time.monotonic() + retention_hours * 3600 + 10
            while await _idempotency_rows(db, sampler["id"]):
                assert time.monotonic() < deadline, "the expired idempotency row was not pruned"
                await asyncio.sleep(0.1)  # polling with a deadline
            # The same request again is now a new call, not a replay: the sample exists already.
            again = await stub.RegisterSamples(request, metadata=bearer(sampler["token"]))
            assert again.created_count == 0
            assert again.results[0].status == pb.REGISTRATION_STATUS_ALREADY_REGISTERED
    finally:
        await running.stop(0)


def test_the_retention_must_be_positive():
    with pytest.raises(ConfigError, match="IDEMPOTENCY_RETENTION_HOURS"):
        load(ResultConfig, service_env("postgresql://x@127.0.0.1/x", IDEMPOTENCY_RETENTION_HOURS="0"))
