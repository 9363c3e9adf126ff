"""Certificate statuses read from a slow read replica (a proxy that holds Postgres's answers).

A status that cannot be read in time is STATUS_UNKNOWN, never VALID.

A status refill racing an amendment: verify_svc reads a certificate's status (VALID, version 1) from a
read replica whose answer is slow to arrive; meanwhile the result is amended, the relay revokes the
certificate (REVOKED, version 2) in Redis, and the key is lost (a failover, a flush). The late refill must
not write VALID into the empty key: afterwards the certificate answers REVOKED, from Postgres or the cache.

Before the refill floor, the late refill wrote `1:VALID` and the certificate verified VALID from the cache
until a day past its expiry, while Postgres said REVOKED."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import grpc
import redis.asyncio as redis

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.registry.certificate_status import StatusCache
from tests.conftest import REDIS_URL, bearer, make_principal, start_verify_svc
from tests.fault.delaying_proxy import DelayingProxy
from tests.publish_svc.conftest import running_platform, until_status_cached
from tests.result_svc.helpers import ago, rid


@contextlib.asynccontextmanager
async def checkpoint_behind_a_slow_replica(database_url: str, status_db_timeout_s: float):
    """The platform, and a verify_svc whose status reads (READ_DATABASE_URL) go through a DelayingProxy.
    Yields (platform, replica proxy, Verify stub, device metadata, status cache, redis client, partner)."""
    parts = urlsplit(database_url)
    replica = await DelayingProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    through_replica = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{replica.port}"))
    client = redis.Redis.from_url(REDIS_URL)
    async with running_platform(database_url) as platform:
        env = {
            **platform.env,
            "READ_DATABASE_URL": through_replica,
            "STATUS_DB_TIMEOUT_SECONDS": str(status_db_timeout_s),
        }
        verify_server = await start_verify_svc(env)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel:
                yield SlowReplicaCheckpoint(
                    platform,
                    replica,
                    verify_service_pb2_grpc.VerifyServiceStub(channel),
                    bearer((await make_principal(database_url, Role.CHECKPOINT, province="24"))["token"]),
                    StatusCache(client, platform.redis_prefix),
                    client,
                    await make_principal(database_url, Role.PARTNER, personal_data_access=True),
                )
        finally:
            replica.response_delay = 0.0
            await verify_server.stop(0)
            await replica.stop()
            await client.aclose()


class SlowReplicaCheckpoint(NamedTuple):
    platform: object
    replica: DelayingProxy
    stub: verify_service_pb2_grpc.VerifyServiceStub
    device: tuple
    cache: StatusCache
    client: redis.Redis
    partner: dict

    async def released(self, count: int) -> list:
        """`count` released results' feed events, their statuses in Redis."""
        start = await self.platform.head() + 1
        await self.platform.release(count, start=start)
        events = await self.platform.collect(self.partner["token"], start, count)
        for event in events:
            await until_status_cached(REDIS_URL, self.platform.redis_prefix, event.certificate.certificate_id)
        return events

    async def verify(self, qr: str, **kw) -> vpb.VerifyResponse:
        return await self.stub.Verify(vpb.VerifyRequest(qr=qr), metadata=self.device, **kw)


async def test_a_status_the_replica_cannot_give_in_time_is_status_unknown(database_url):
    async with checkpoint_behind_a_slow_replica(database_url, 0.3) as checkpoint:
        (event,) = await checkpoint.released(1)
        await checkpoint.client.delete(checkpoint.cache.key(event.certificate.certificate_id))  # a miss
        checkpoint.replica.response_delay = 1.0
        started = time.monotonic()
        answer = await checkpoint.verify(event.certificate.qr, timeout=5)
        assert time.monotonic() - started < 1.0  # the status timeout, not the replica, sets the pace
        assert answer.verdict == v.VERDICT_STATUS_UNKNOWN, (answer.verdict, answer.reason)
        assert answer.status_source == v.STATUS_SOURCE_UNCHECKED and not answer.accept_with_warning
        assert answer.reason == "hiện không kiểm tra được chứng nhận đã bị thu hồi hay chưa"  # default language: vi


async def test_a_late_refill_cannot_undo_a_revocation(database_url):
    async with checkpoint_behind_a_slow_replica(database_url, 20) as checkpoint:
        platform, replica, cache, client = checkpoint.platform, checkpoint.replica, checkpoint.cache, checkpoint.client
        events = await checkpoint.released(2)
        warm, raced = (e.certificate for e in events)

        # A miss on `warm` opens verify_svc's connection to the replica, undelayed.
        await client.delete(cache.key(warm.certificate_id))
        assert (await checkpoint.verify(warm.qr)).status_source == v.STATUS_SOURCE_DATABASE

        # `raced` misses the cache; the replica reads VALID v1 now, and its answer is held.
        await client.delete(cache.key(raced.certificate_id))
        replica.response_delay = 1.0
        scan = asyncio.ensure_future(checkpoint.verify(raced.qr, timeout=30))
        await asyncio.wait_for(replica.holding.wait(), 10)

        # Meanwhile: the lab amends the result, the relay revokes the certificate in Redis...
        amended = await platform.results.AmendResult(
            rpb.AmendResultRequest(
                request_id=rid(),
                sample_barcode=events[1].result.sample_barcode,
                outcome=t.OUTCOME_POSITIVE,
                tested_at=ago(minutes=30),
                method="RT-PCR",
                reason="re-run after control failure",
            ),
            metadata=bearer(platform.lab["token"]),
        )
        assert amended.result.version == 2
        deadline = time.monotonic() + 10
        while (stored := await cache.get(raced.certificate_id)) is None or stored.status != "REVOKED":
            assert time.monotonic() < deadline, "the relay never wrote the revocation to Redis"
            await asyncio.sleep(0.02)
        # ...and the key is lost (a Redis failover to a replica that missed it, a flush).
        await client.delete(cache.key(raced.certificate_id))

        await scan  # the held answer arrives: the scan began before the amendment
        replica.response_delay = 0.0
        assert await cache.get(raced.certificate_id) is None, "a late refill wrote an old status"
        for _ in range(2):  # from Postgres, then from the refilled cache
            answer = await checkpoint.verify(raced.qr)
            assert answer.verdict == v.VERDICT_REVOKED, (answer.verdict, answer.status_source)
