"""Fixtures for publish_svc: result_svc and publish_svc on one database, an active signing key, partners."""

import asyncio
import contextlib
import time
import uuid

import grpc
import pytest
import redis.asyncio as redis

from services.common.auth import Role
from services.common.cache import create_client
from services.common.config import parse_keyring, parse_secret_bytes
from services.common.db import connect
from services.common.pii import PiiCipher
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.registry import signing_keys
from services.registry.certificate_status import StatusCache
from services.registry.key_sealing import SigningKeySealer, parse_kek_public
from tests.conftest import (
    REDIS_URL,
    bearer,
    make_principal,
    service_env,
    start_publish_svc,
    start_result_svc,
)
from tests.result_svc.helpers import result, rid, sample, unique


class Platform:
    """result_svc + publish_svc in-process on one database, with the callers a test needs."""

    def __init__(self, env, result_run, publish_run, channel_r, channel_p):
        self.env = env
        self.result_server, self.publish_server = result_run, publish_run
        self.results = result_service_pb2_grpc.ResultServiceStub(channel_r)
        self.publish = publish_service_pb2_grpc.PublishServiceStub(channel_p)
        self.pii = PiiCipher(parse_keyring(env["PII_KEYS"]), parse_secret_bytes(env["PII_PEPPER"]))

    async def release(self, count: int, *, start: int = 0, outcome=t.OUTCOME_NEGATIVE, pool: bool = False) -> list[str]:
        """Register `count` samples and record their result; returns the sample barcodes."""
        pool_barcode = unique("POOL") if pool else ""
        items = [sample(unique("F"), self.lab["id"], start + i, pool_barcode=pool_barcode) for i in range(count)]
        reply = await self.results.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=bearer(self.unit["token"])
        )
        assert reply.created_count == count, reply
        submissions = (
            [result(outcome, pool_barcode=pool_barcode)]
            if pool
            else [result(outcome, sample_barcode=i.sample_barcode) for i in items]
        )
        recorded = await self.results.RecordResults(
            rpb.RecordResultsRequest(request_id=rid(), results=submissions), metadata=bearer(self.lab["token"])
        )
        assert recorded.rejected_count == 0, recorded
        return [i.sample_barcode for i in items]

    async def collect(
        self, partner_token: str, from_position: int, count: int, timeout: float = 15, *, pending: bool = False
    ) -> list:
        """Read `count` events from a fresh stream starting at from_position: result events only, unless
        `pending` (then SAMPLE_REGISTERED events, which precede every sample's result, count too)."""
        events = []
        call = self.publish.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=from_position), metadata=bearer(partner_token)
        )
        deadline = time.monotonic() + timeout
        try:
            while len(events) < count:
                message = await asyncio.wait_for(call.read(), max(0.01, deadline - time.monotonic()))
                assert message is not grpc.aio.EOF
                events += [e for e in message.events if pending or e.kind != t.RESULT_EVENT_KIND_SAMPLE_REGISTERED]
        finally:
            call.cancel()
        return events[:count]

    async def head(self) -> int:
        status = await self.publish.GetFeedStatus(ppb.GetFeedStatusRequest(), metadata=bearer(self.operator["token"]))
        return status.head_position


async def activate_new_key(
    database_url: str, env: dict[str, str], algorithm: str = "ES256", purpose: str = signing_keys.DCC
):
    """A new signing key of `purpose`, sealed with the KEK of `env` (SIGNING_KEYS_KEK_PUBLIC), made the ACTIVE one."""
    sealer = SigningKeySealer(parse_kek_public(env["SIGNING_KEYS_KEK_PUBLIC"]))
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            key = await signing_keys.generate(conn, None, sealer, algorithm, purpose=purpose)
            await signing_keys.activate(conn, None, key.id)
        return key
    finally:
        await conn.close()


async def start_platform(database_url: str, redis_prefix: str, **publish_env) -> Platform:
    defaults = {"REDIS_PREFIX": redis_prefix, "RELAY_POLL_SECONDS": "0.05", "FEED_HEARTBEAT_SECONDS": "1"}
    env = service_env(database_url, **{**defaults, **publish_env})
    # Each service as its own database role, as in production; `env` (kept on the platform) is the owner's.
    result_run = await start_result_svc(env)
    publish_run = await start_publish_svc(env)
    channel_r = grpc.aio.insecure_channel(f"127.0.0.1:{result_run.port}")
    channel_p = grpc.aio.insecure_channel(f"127.0.0.1:{publish_run.port}")
    platform = Platform(env, result_run, publish_run, channel_r, channel_p)
    platform.channels = (channel_r, channel_p)
    return platform


async def stop_platform(platform: Platform) -> None:
    for channel in platform.channels:
        await channel.close()
    await platform.publish_server.stop(0)
    await platform.result_server.stop(0)


@contextlib.asynccontextmanager
async def running_platform(database_url: str, **publish_env: str):
    """result_svc + publish_svc with an active key, a sampling unit, a lab and an operator; Redis keys
    of its own prefix are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    running = await start_platform(database_url, prefix, **publish_env)
    try:
        running.redis_prefix = prefix
        running.key = await activate_new_key(database_url, running.env)
        running.unit = await make_principal(database_url, Role.SAMPLER)
        running.lab = await make_principal(database_url, Role.LAB)
        running.operator = await make_principal(database_url, Role.OPERATOR)
        yield running
    finally:
        await stop_platform(running)
        client = redis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(scope="module")
async def platform(database_url):
    async with running_platform(database_url) as running:
        yield running


async def until_status_cached(redis_url: str, prefix: str, certificate_id: str, timeout_s: float = 10) -> None:
    """Wait until Redis holds the certificate's status. The relay writes it just after the commit that
    delivers the event, so a consumer may hold the event a moment before Redis holds the status."""
    client = create_client(redis_url)
    try:
        cache, deadline = StatusCache(client, prefix), time.monotonic() + timeout_s
        while await cache.get(certificate_id) is None:
            assert time.monotonic() < deadline, "the relay never wrote the status to Redis"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def new_partner(database_url: str, personal_data_access: bool) -> dict:
    principal = await make_principal(database_url, Role.PARTNER)
    if personal_data_access:
        conn = await connect(database_url)
        try:
            await conn.execute("UPDATE partners SET personal_data_access = true WHERE id = $1::uuid", principal["id"])
        finally:
            await conn.close()
    return principal
