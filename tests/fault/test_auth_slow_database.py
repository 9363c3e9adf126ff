"""Authentication with Postgres slow, not down: result_svc reaches Postgres through a proxy that can delay
every chunk by 1.5 s (a round trip of about 3 s, beyond the 0.5 s credential lookup timeout).

A credential resolved before keeps being admitted from its last resolution, concurrent first calls with
one token share one lookup, and a token never seen gets UNAVAILABLE at the lookup timeout instead of the
client's DEADLINE_EXCEEDED after seconds."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest

from services.common.auth import Role, new_token
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_result_svc
from tests.fault.delaying_proxy import DelayingProxy

SLOW = 1.5  # seconds per chunk: Postgres answers in about 3 s


@pytest.fixture
async def proxy(database_url):
    parts = urlsplit(database_url)
    running = await DelayingProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    yield running
    await running.stop()


@pytest.fixture
async def stub(database_url, proxy):
    parts = urlsplit(database_url)
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    # AUTH_CACHE_SECONDS stays 0.2 (service_env): cache entries end many times during each test.
    running = await start_result_svc(service_env(through_proxy))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield result_service_pb2_grpc.ResultServiceStub(channel)
    finally:
        proxy.delay = 0  # let the pool close promptly
        await running.stop(0)


async def _code(stub, token: str, timeout: float) -> grpc.StatusCode:
    """The status of RecordResults with an empty request: INVALID_ARGUMENT (no request id) means a LAB got
    past identity, the request being refused by its own checks before any database work."""
    try:
        await stub.RecordResults(result_service_pb2.RecordResultsRequest(), metadata=bearer(token), timeout=timeout)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_known_credentials_keep_working_while_postgres_is_slow(database_url, proxy, stub, lookups):
    lab = await make_principal(database_url, Role.LAB)
    device = await make_principal(database_url, Role.CHECKPOINT)
    assert await _code(stub, lab["token"], 5) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(stub, device["token"], 5) == grpc.StatusCode.PERMISSION_DENIED  # known, wrong role
    before = len(lookups)

    proxy.delay = SLOW
    # Three seconds: the 0.2 s cache entries end again and again, and each lookup takes about 3 s.
    until = time.monotonic() + 3
    calls = 0
    while time.monotonic() < until:
        lab_code, device_code = await asyncio.gather(_code(stub, lab["token"], 1.2), _code(stub, device["token"], 1.2))
        assert lab_code == grpc.StatusCode.INVALID_ARGUMENT, lab_code
        assert device_code == grpc.StatusCode.PERMISSION_DENIED, device_code
        calls += 1
    assert calls >= 3
    assert len(lookups) > before, "the cache entries must have ended and been looked up again"


async def test_concurrent_first_calls_share_one_lookup(database_url, proxy, stub, lookups):
    lab = await make_principal(database_url, Role.LAB)
    proxy.delay = 0.05  # slow enough that the calls overlap, well within the lookup timeout
    codes = await asyncio.gather(*(_code(stub, lab["token"], 5) for _ in range(20)))
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}, codes
    assert len(lookups) == 1

    # Slower than the timeout: the first calls of another token share one lookup too, and all get
    # UNAVAILABLE at the timeout.
    other = await make_principal(database_url, Role.LAB)
    proxy.delay = SLOW
    started = time.monotonic()
    codes = await asyncio.gather(*(_code(stub, other["token"], 5) for _ in range(20)))
    assert set(codes) == {grpc.StatusCode.UNAVAILABLE}, codes
    assert time.monotonic() - started < 1.5
    assert len(lookups) == 2


async def test_unknown_token_gets_unavailable_quickly_while_postgres_is_slow(proxy, stub):
    proxy.delay = SLOW
    for _ in range(3):  # each call looks it up again: an unknown credential is never admitted stale
        started = time.monotonic()
        assert await _code(stub, new_token(), 5) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.2
