"""Rate limits do not fail open when Redis is unreachable: a checkpoint device beyond SCANS_PER_MINUTE and a
partner beyond CITIZEN_LOOKUPS_PER_MINUTE are still refused RESOURCE_EXHAUSTED (RATE_LIMITED)."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.grpc_errors import error_reason
from tests.publish_svc.conftest import activate_new_key, start_platform, stop_platform
from tests.result_svc.helpers import person

LIMIT = 3
CALLS = 5


async def in_one_window(attempt: Callable[[], Awaitable[list[str]]], window_s: int = 60) -> list[str]:
    """The outcomes of `attempt` run whole inside one fixed rate-limit window. An attempt that crossed a
    window boundary proves nothing (its count restarted), so it is run again (with fresh callers)."""
    for _ in range(3):
        window = int(time.time() // window_s)
        outcomes = await attempt()
        if int(time.time() // window_s) == window:
            return outcomes
    pytest.fail("every attempt crossed a rate-limit window boundary")


async def outcome(call: Awaitable) -> str:
    try:
        await call
        return "OK"
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        return error_reason(err)


async def test_checkpoint_scans_beyond_the_limit_are_refused_with_redis_down(database_url, private_redis):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    platform = await start_platform(database_url, prefix, REDIS_URL=private_redis.url(), SCANS_PER_MINUTE=str(LIMIT))
    verify_server = None
    try:
        platform.key = await activate_new_key(database_url, platform.env)
        platform.unit = await make_principal(database_url, Role.SAMPLER)
        platform.lab = await make_principal(database_url, Role.LAB)
        platform.operator = await make_principal(database_url, Role.OPERATOR)
        partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        start = await platform.head() + 1
        await platform.release(1, start=8100)
        qr = (await platform.collect(partner["token"], start, 1))[0].certificate.qr
        verify_server = await start_verify_svc(platform.env)
        await asyncio.to_thread(private_redis.stop)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel:
            stub = verify_service_pb2_grpc.VerifyServiceStub(channel)

            async def scans() -> list[str]:
                device = await make_principal(database_url, Role.CHECKPOINT)
                outcomes = []
                for _ in range(CALLS):
                    try:
                        answer = await stub.Verify(
                            vpb.VerifyRequest(qr=qr), metadata=bearer(device["token"]), timeout=5
                        )
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
                        outcomes.append(error_reason(err))
                        continue
                    # Redis is really out of the path: the status came from Postgres.
                    assert answer.verdict == v.VERDICT_VALID, answer.reason
                    assert answer.status_source == v.STATUS_SOURCE_DATABASE, answer.status_source
                    outcomes.append("OK")
                return outcomes

            assert await in_one_window(scans) == ["OK"] * LIMIT + ["RATE_LIMITED"] * (CALLS - LIMIT)
            # Another device keeps its own budget.
            other = await make_principal(database_url, Role.CHECKPOINT)
            await stub.Verify(vpb.VerifyRequest(qr=qr), metadata=bearer(other["token"]), timeout=5)
    finally:
        if verify_server is not None:
            await verify_server.stop(0)
        await stop_platform(platform)


async def test_partner_lookups_beyond_the_limit_are_refused_with_redis_down(database_url, private_redis):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    platform = await start_platform(
        database_url,
        prefix,
        REDIS_URL=private_redis.url(),
        CITIZEN_LOOKUPS_PER_MINUTE=str(LIMIT),
        RELAY_ENABLED="false",
    )
    try:
        await asyncio.to_thread(private_redis.stop)
        request = ppb.GetCitizenResultsRequest(identity=person(8200).identity, date_of_birth="1985-03-14")

        async def lookups() -> list[str]:
            partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
            return [
                await outcome(platform.publish.GetCitizenResults(request, metadata=bearer(partner["token"]), timeout=5))
                for _ in range(CALLS)
            ]

        assert await in_one_window(lookups) == ["OK"] * LIMIT + ["RATE_LIMITED"] * (CALLS - LIMIT)
        other = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        await platform.publish.GetCitizenResults(request, metadata=bearer(other["token"]), timeout=5)
    finally:
        await stop_platform(platform)
