"""A verify_svc whose trust list is not in memory yet (issue 17: "a loading pod never answers an empty
trust list"): health NOT_SERVING, GetTrustList / GetRules / Verify UNAVAILABLE after a bounded wait,
never an empty "full" list; once loaded, SERVING and the real list."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_verify_svc
from tests.grpc_errors import error_reason
from tests.publish_svc.conftest import activate_new_key
from tools.servers import free_port


async def _health(channel) -> int:
    return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)).status


async def _refused(call, reason: str) -> None:
    """`call` must fail UNAVAILABLE with `reason`, never answer."""
    try:
        answer = await call
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE and error_reason(err) == reason, err
    else:
        raise AssertionError(f"answered where it must refuse ({reason}): {answer}")


async def _until_serving(channel) -> None:
    deadline = time.monotonic() + 10
    while await _health(channel) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, "never SERVING after the table could be read"
        await asyncio.sleep(0.05)


async def test_a_verify_svc_that_has_not_loaded_its_trust_list_never_answers_an_empty_one(database_url):
    env = service_env(database_url)
    await activate_new_key(database_url, env)
    device = await make_principal(database_url, Role.CHECKPOINT)
    blocker = await connect(database_url)
    transaction = blocker.transaction()
    await transaction.start()
    # The trust list reload reads this table: while it is locked, the new process cannot load.
    await blocker.execute("LOCK TABLE trusted_certificates IN ACCESS EXCLUSIVE MODE")
    running = await start_verify_svc(env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub, auth = verify_service_pb2_grpc.VerifyServiceStub(channel), bearer(device["token"])
            assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            calls = (
                stub.GetTrustList(vpb.GetTrustListRequest(), metadata=auth, timeout=20),
                stub.GetRules(vpb.GetRulesRequest(), metadata=auth, timeout=20),
                stub.GetCheckpointBundle(vpb.GetCheckpointBundleRequest(), metadata=auth, timeout=20),
            )
            for call in calls:
                await _refused(call, "SERVER_UNAVAILABLE")
            await transaction.rollback()
            await _until_serving(channel)
            trust_list = await stub.GetTrustList(vpb.GetTrustListRequest(), metadata=auth, timeout=10)
            assert trust_list.full and len(trust_list.added) >= 1  # the active signing key
    finally:
        if not blocker.is_closed():
            await blocker.close()
        await running.stop(0)


async def _http_status(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/bundle/v1/latest") as response:
        return response.status


async def test_a_verify_svc_that_has_not_read_the_bundle_table_answers_neither_rpc_nor_http(database_url):
    """The checkpoint bundle likewise: health NOT_SERVING, GetCheckpointBundle UNAVAILABLE and HTTP 503 until
    the table has been read; then, with no bundle issued on this database (no bundle key), still no
    made-up bundle: UNAVAILABLE BUNDLE_NOT_ISSUED and 503."""
    env = service_env(database_url)
    device = await make_principal(database_url, Role.CHECKPOINT)
    blocker = await connect(database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("LOCK TABLE checkpoint_bundles IN ACCESS EXCLUSIVE MODE")
    http_port = free_port()
    running = await start_verify_svc(env, BUNDLE_HTTP_PORT=str(http_port))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub, auth = verify_service_pb2_grpc.VerifyServiceStub(channel), bearer(device["token"])
            assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            deadline = time.monotonic() + 10
            while True:  # the HTTP site starts beside the gRPC server
                try:
                    assert await _http_status(http_port) == 503
                    break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "the bundle's HTTP port never opened"
                    await asyncio.sleep(0.05)
            bundle = vpb.GetCheckpointBundleRequest()
            await _refused(stub.GetCheckpointBundle(bundle, metadata=auth, timeout=20), "SERVER_UNAVAILABLE")
            await transaction.rollback()
            await _until_serving(channel)
            await _refused(stub.GetCheckpointBundle(bundle, metadata=auth, timeout=10), "BUNDLE_NOT_ISSUED")
            assert await _http_status(http_port) == 503
    finally:
        if not blocker.is_closed():
            await blocker.close()
        await running.stop(0)
