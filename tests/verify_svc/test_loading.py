"""A verify_svc whose trust list is not in memory yet (issue 17: "a loading pod never answers an empty
trust list"): health NOT_SERVING, GetTrustList / GetRules / Verify UNAVAILABLE after a bounded wait,
never an empty "full" list; once loaded, SERVING and the real list."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_verify_svc
from tests.grpc_errors import error_reason
from tests.publish_svc.conftest import activate_new_key


async def _health(channel) -> int:
    return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)).status


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
            for call in (stub.GetTrustList(vpb.GetTrustListRequest(), metadata=auth, timeout=20),
                         stub.GetRules(vpb.GetRulesRequest(), metadata=auth, timeout=20)):  # fmt: skip
                try:
                    answer = await call
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE and error_reason(err) == "SERVER_UNAVAILABLE"
                else:
                    raise AssertionError(f"answered before the trust list was loaded: {answer}")
            await transaction.rollback()
            deadline = time.monotonic() + 10
            while await _health(channel) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "never SERVING after the trust list could load"
                await asyncio.sleep(0.05)
            trust_list = await stub.GetTrustList(vpb.GetTrustListRequest(), metadata=auth, timeout=10)
            assert trust_list.full and len(trust_list.added) >= 1  # the active signing key
    finally:
        if not blocker.is_closed():
            await blocker.close()
        await running.stop(0)
