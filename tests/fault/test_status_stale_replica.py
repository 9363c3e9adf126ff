"""A real streaming read replica that stopped replaying (pg_wal_replay_pause()) while a result is amended.

verify_svc reads a certificate's status from the replica (READ_DATABASE_URL) when Redis has none. The
replica still holds VALID; the primary holds REVOKED. Verify must answer REVOKED, never the replica's stale
VALID: a replica read counts only once its snapshot has reached the primary's feed head, else the status
is read from the primary (services/verify_svc/status.py). Before that fence, this scan answered VALID.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from services.common import migrate
from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.registry.certificate_status import StatusCache
from tests.conftest import REDIS_URL, bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import running_platform, until_status_cached
from tests.verify_svc.conftest import amend_to_positive
from tools.servers import PostgresServer

BEHIND = "covidtest_status_replica_behind_total"


@pytest.fixture
def streaming_replica(private_postgres):
    """An asynchronous streaming replica of the private primary."""
    root = Path(tempfile.mkdtemp(prefix="ct-pg-replica-", dir="/tmp"))
    replica = PostgresServer(root, private_postgres.bindir)
    replica.init_replica_of(private_postgres)
    replica.start()
    yield replica
    replica.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


async def _replica_has(replica_dsn: str, certificate_id: str, status: str) -> None:
    conn = await connect(replica_dsn)
    try:
        deadline = time.monotonic() + 15
        while await conn.fetchval("SELECT status FROM certificates WHERE uvci = $1", certificate_id) != status:
            assert time.monotonic() < deadline, f"the replica never replayed {certificate_id} {status}"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_paused_replica_never_answers_a_stale_valid(private_postgres, streaming_replica):
    primary_dsn = private_postgres.url()
    await migrate.apply(primary_dsn)
    replica_dsn = streaming_replica.url()
    client = redis.Redis.from_url(REDIS_URL)
    async with running_platform(primary_dsn) as platform:
        # verify_svc on a Redis prefix of its own: as after a Redis failover that lost the relay's statuses,
        # each scan misses the cache (the relay keeps writing under the platform's prefix) and asks Postgres.
        verify_prefix = f"{platform.redis_prefix}v"
        verifying = await start_verify_svc(
            platform.env, READ_DATABASE_URL=replica_dsn, REPLICA_CATCH_UP_SECONDS="0.05", REDIS_PREFIX=verify_prefix
        )
        try:
            partner = await make_principal(primary_dsn, Role.PARTNER, personal_data_access=True)
            device = bearer((await make_principal(primary_dsn, Role.CHECKPOINT, province="24"))["token"])
            start = await platform.head() + 1
            await platform.release(1, start=start)
            (event,) = await platform.collect(partner["token"], start, 1)
            certificate = event.certificate
            await until_status_cached(REDIS_URL, platform.redis_prefix, certificate.certificate_id)
            await _replica_has(replica_dsn, certificate.certificate_id, "VALID")
            cache = StatusCache(client, verify_prefix)

            async with grpc.aio.insecure_channel(f"127.0.0.1:{verifying.port}") as channel:
                stub = verify_service_pb2_grpc.VerifyServiceStub(channel)

                async def scan() -> vpb.VerifyResponse:
                    """A scan that misses the cache, so Postgres is asked. The key is deleted; until the process's
                    mirror of Redis has heard of the deletion (an invalidation message), a scan may still answer
                    from it (CACHE): scan again until one is answered from Postgres."""
                    deadline = time.monotonic() + 10
                    while True:
                        await client.delete(cache.key(certificate.certificate_id))
                        answer = await stub.Verify(vpb.VerifyRequest(qr=certificate.qr), metadata=device, timeout=10)
                        if answer.status_source != v.STATUS_SOURCE_CACHE:
                            return answer
                        assert time.monotonic() < deadline, "every scan was answered from the cache"

                # A replica that keeps up serves the miss itself.
                behind_before = REGISTRY.get_sample_value(BEHIND) or 0.0
                answer = await scan()
                assert (answer.verdict, answer.status_source) == (v.VERDICT_VALID, v.STATUS_SOURCE_DATABASE)
                assert (REGISTRY.get_sample_value(BEHIND) or 0.0) == behind_before

                # The replica stops replaying; the lab amends the result; the relay revokes the certificate.
                replica = await connect(replica_dsn)
                try:
                    await replica.execute("SELECT pg_wal_replay_pause()")
                    amended = await amend_to_positive(platform, event)
                    assert amended.result.version == 2
                    relayed = StatusCache(client, platform.redis_prefix)
                    deadline = time.monotonic() + 10
                    while (
                        stored := await relayed.get(certificate.certificate_id)
                    ) is None or stored.status != "REVOKED":
                        assert time.monotonic() < deadline, "the relay never wrote the revocation to Redis"
                        await asyncio.sleep(0.02)
                    stale = await replica.fetchval(
                        "SELECT status FROM certificates WHERE uvci = $1", certificate.certificate_id
                    )
                    assert stale == "VALID"  # the replica really is behind

                    # The key is lost (a Redis failover): the miss must not take the replica's VALID.
                    answer = await scan()
                    assert (answer.verdict, answer.status_source) == (v.VERDICT_REVOKED, v.STATUS_SOURCE_DATABASE)
                    assert (REGISTRY.get_sample_value(BEHIND) or 0.0) > behind_before

                    await replica.execute("SELECT pg_wal_replay_resume()")
                finally:
                    await replica.close()
                await _replica_has(replica_dsn, certificate.certificate_id, "REVOKED")
                behind_resumed = REGISTRY.get_sample_value(BEHIND) or 0.0
                answer = await scan()  # caught up again: the replica serves, REVOKED
                assert (answer.verdict, answer.status_source) == (v.VERDICT_REVOKED, v.STATUS_SOURCE_DATABASE)
                assert (REGISTRY.get_sample_value(BEHIND) or 0.0) == behind_resumed
        finally:
            await verifying.stop(0)
            keys = [k async for k in client.scan_iter(match=f"{verify_prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
