"""A credential's expiry is enforced at its instant, whatever the credential cache says."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_result_svc
from tests.grpc_errors import error_reason


@pytest.fixture
async def stub(database_url):
    # An hour of cache: any refusal within the test comes from the expiry the cached principal carries.
    running = await start_result_svc(service_env(database_url, AUTH_CACHE_SECONDS="3600"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield result_service_pb2_grpc.ResultServiceStub(channel)
    finally:
        await running.stop(0)


async def _record_empty(stub, token: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordResults(result_service_pb2.RecordResultsRequest(), metadata=bearer(token), timeout=5)
    return err.value


async def test_expired_credential_is_refused_at_its_expiry_while_cached(database_url, stub, lookups):
    lab = await make_principal(database_url, Role.LAB)
    conn = await connect(database_url)
    try:
        expires_at = await conn.fetchval(
            "UPDATE credentials SET expires_at = now() + interval '1.5 seconds' WHERE id = $1"
            " RETURNING EXTRACT(EPOCH FROM expires_at)::float8",
            lab["credential_id"],
        )
    finally:
        await conn.close()

    # Resolved once before its expiry, with the expiry; admitted (past identity: the request is empty).
    assert (await _record_empty(stub, lab["token"])).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert time.time() < expires_at, "the machine was too slow for this test's 1.5 s margin"

    deadline = time.monotonic() + 10
    while True:
        err = await _record_empty(stub, lab["token"])
        if err.code() == grpc.StatusCode.UNAUTHENTICATED:
            refused_at = time.time()
            break
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.code()
        assert time.time() < expires_at + 0.5, "admitted after its expiry"
        assert time.monotonic() < deadline, "expired credential still accepted"
        await asyncio.sleep(0.02)  # polling interval, not synchronisation
    assert refused_at >= expires_at
    assert error_reason(err) == "CREDENTIAL_INVALID"
    assert len(lookups) == 1, "the refusal came from the cached principal's expiry, not a new lookup"
