"""Verification when Redis, Postgres or both are down: answers within the deadline, says where the status
came from, reports degraded dependencies, and recovers without a restart. With both down, one of our own
certificates answers STATUS_UNKNOWN, not VALID."""

import asyncio
import time
import uuid

import grpc
from prometheus_client import REGISTRY

from services.common import migrate
from services.common.auth import Role
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import activate_new_key, start_platform, stop_platform, until_status_cached


def dependency_up(name: str) -> float | None:
    return REGISTRY.get_sample_value("covidtest_dependency_up", {"service": "verify_svc", "dependency": name})


async def test_verify_answers_with_redis_down_postgres_down_and_both(private_postgres, private_redis):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    platform = await start_platform(
        dsn, prefix, REDIS_URL=private_redis.url(), AUTH_CACHE_SECONDS="0.2", STATUS_DB_TIMEOUT_SECONDS="0.3"
    )
    verify_server = None
    try:
        platform.key = await activate_new_key(dsn, platform.env)
        platform.unit = await make_principal(dsn, Role.SAMPLER)
        platform.lab = await make_principal(dsn, Role.LAB)
        partner = await make_principal(dsn, Role.PARTNER, personal_data_access=True)
        device = await make_principal(dsn, Role.CHECKPOINT)
        verify_server = await start_verify_svc(platform.env)
        await platform.release(1, start=1)
        event = (await platform.collect(partner["token"], 1, 1))[0]
        await until_status_cached(private_redis.url(), prefix, event.certificate.certificate_id)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel:
            stub = verify_service_pb2_grpc.VerifyServiceStub(channel)

            async def check(expected_source, expected_verdict=v.VERDICT_VALID):
                started = time.monotonic()
                answer = await stub.Verify(
                    vpb.VerifyRequest(qr=event.certificate.qr), metadata=bearer(device["token"]), timeout=2
                )
                elapsed = time.monotonic() - started
                assert answer.verdict == expected_verdict, answer.reason
                assert not answer.accept_with_warning  # the default policy refuses what it cannot check
                assert answer.status_source == expected_source, (answer.status_source, expected_source)
                assert elapsed < 1.5, f"answer took {elapsed:.2f} s"

            await check(v.STATUS_SOURCE_CACHE)

            await asyncio.to_thread(private_redis.stop)  # Redis down: Postgres answers
            await check(v.STATUS_SOURCE_DATABASE)
            assert dependency_up("redis") == 0

            await asyncio.to_thread(private_redis.start)  # Redis back (empty): refilled from Postgres
            deadline = time.monotonic() + 10
            while True:
                answer = await stub.Verify(vpb.VerifyRequest(qr=event.certificate.qr), metadata=bearer(device["token"]))
                if answer.status_source == v.STATUS_SOURCE_CACHE:
                    break
                assert time.monotonic() < deadline, "did not go back to the cache after Redis returned"
                await asyncio.sleep(0.1)
            assert dependency_up("redis") == 1

            await asyncio.to_thread(private_postgres.stop, "immediate")  # Postgres down: Redis answers
            await check(v.STATUS_SOURCE_CACHE)

            # Both down: genuine and within the rules, but possibly revoked. Never VALID.
            await asyncio.to_thread(private_redis.stop)
            await check(v.STATUS_SOURCE_UNCHECKED, v.VERDICT_STATUS_UNKNOWN)
            assert dependency_up("redis") == 0 and dependency_up("postgres") == 0

            await asyncio.to_thread(private_postgres.start)  # recovery without a restart
            await asyncio.to_thread(private_redis.start)
            deadline = time.monotonic() + 15
            while True:
                answer = await stub.Verify(vpb.VerifyRequest(qr=event.certificate.qr), metadata=bearer(device["token"]))
                if answer.status_source in (v.STATUS_SOURCE_DATABASE, v.STATUS_SOURCE_CACHE):
                    break
                assert time.monotonic() < deadline, "did not recover after Postgres and Redis returned"
                await asyncio.sleep(0.1)
            assert dependency_up("postgres") == 1
    finally:
        if verify_server is not None:
            await verify_server.stop(0)
        await stop_platform(platform)
