"""Unknown credentials cost their sender, not the known callers, over real gRPC with real Postgres:
a flood of random tokens evicts no resolved credential from the cache, and its database lookups are
bounded by a per-address rate limit that known callers never meet."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from services.common import auth
from services.common.auth import Role, new_token, token_digest
from services.common.db import connect
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_result_svc
from tests.grpc_errors import error_reason

FLOOD = 2000


def _lookups_metric(outcome: str) -> float:
    return REGISTRY.get_sample_value("covidtest_credential_lookups_total", {"outcome": outcome}) or 0.0


async def _result_svc(database_url: str, **env: str):
    return await start_result_svc(service_env(database_url, **env))


async def _call(stub, token: str) -> grpc.aio.AioRpcError:
    """RecordResults with an empty request: INVALID_ARGUMENT (no request id) means a LAB got past
    identity, the request being refused by its own checks before any database work."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordResults(result_service_pb2.RecordResultsRequest(), metadata=bearer(token), timeout=10)
    return err.value


async def _flood(stub, count: int, concurrency: int = 100) -> list[grpc.aio.AioRpcError]:
    answers: list[grpc.aio.AioRpcError] = []
    for start in range(0, count, concurrency):
        answers += await asyncio.gather(*(_call(stub, new_token()) for _ in range(min(concurrency, count - start))))
    return answers


async def _revoke(database_url: str, credential_id: str) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE credentials SET revoked_at = now() WHERE id = $1", credential_id)
    finally:
        await conn.close()


async def test_a_flood_of_unknown_tokens_evicts_no_known_credential(database_url, lookups, monkeypatch):
    # Small cache bounds, so that the flood overflows both; the rate limit is lifted, so that every one
    # of its tokens is looked up and cached as a refusal: what is tested here is the cache alone.
    monkeypatch.setattr(auth, "_CACHE_LIMIT", 1000)
    monkeypatch.setattr(auth, "_REFUSED_LIMIT", 500, raising=False)  # absent before it existed
    running = await _result_svc(
        database_url,
        AUTH_CACHE_SECONDS="3600",
        AUTH_UNKNOWN_LOOKUPS_PER_SECOND="1000000",
        AUTH_UNKNOWN_LOOKUP_BURST="1000000",
    )
    try:
        lab = await make_principal(database_url, Role.LAB)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            assert (await _call(stub, lab["token"])).code() == grpc.StatusCode.INVALID_ARGUMENT
            # From now on only the cache can admit the lab: a lookup would find its credential revoked.
            await _revoke(database_url, lab["credential_id"])

            answers = await _flood(stub, FLOOD)
            assert {a.code() for a in answers} == {grpc.StatusCode.UNAUTHENTICATED}
            assert len(lookups) == 1 + FLOOD, "every flood token was looked up (no rate limit in this test)"

            err = await _call(stub, lab["token"])
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                f"{err.code()}: the known credential was evicted by the flood and looked up again"
            )
            assert lookups.count(token_digest(lab["token"])) == 1
    finally:
        await running.stop(0)


async def test_unknown_tokens_are_rate_limited_per_address_and_known_callers_are_not(database_url, lookups):
    # A cache of 0.2 s: the known caller's entry ends again and again during the flood, and each of its
    # re-checks is a lookup the limit must let through.
    rate, burst = 20, 40
    running = await _result_svc(
        database_url,
        AUTH_CACHE_SECONDS="0.2",
        AUTH_UNKNOWN_LOOKUPS_PER_SECOND=str(rate),
        AUTH_UNKNOWN_LOOKUP_BURST=str(burst),
    )
    try:
        lab = await make_principal(database_url, Role.LAB)
        lab_digest = token_digest(lab["token"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            assert (await _call(stub, lab["token"])).code() == grpc.StatusCode.INVALID_ARGUMENT
            before = {o: _lookups_metric(o) for o in ("found", "refused", "throttled")}
            first_lookup = len(lookups)

            flooding = True
            known: list[tuple[grpc.StatusCode, float]] = []

            async def known_caller() -> None:
                while flooding:
                    started = time.perf_counter()
                    code = (await _call(stub, lab["token"])).code()
                    known.append((code, time.perf_counter() - started))
                    await asyncio.sleep(0.01)

            caller = asyncio.create_task(known_caller())
            started = time.monotonic()
            try:
                answers = await _flood(stub, FLOOD)
            finally:
                elapsed = time.monotonic() - started
                flooding = False
                await caller

            flood_lookups = [d for d in lookups[first_lookup:] if d != lab_digest]
            allowed = burst + rate * elapsed + 1
            assert len(flood_lookups) <= allowed, (
                f"{len(flood_lookups)} database lookups for {FLOOD} unknown tokens in {elapsed:.1f} s "
                f"(the limit allows {allowed:.0f})"
            )
            codes = [a.code() for a in answers]
            assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == len(flood_lookups)
            throttled = [a for a in answers if a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert len(throttled) == FLOOD - len(flood_lookups)
            assert error_reason(throttled[0]) == "RATE_LIMITED"
            retry = error_details_pb2.RetryInfo()
            assert any(d.Unpack(retry) for d in rpc_status.from_call(throttled[0]).details)
            assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 1 / rate + 0.01

            # The known caller was admitted every time, its entry re-checked in Postgres as it ended.
            assert known and all(code == grpc.StatusCode.INVALID_ARGUMENT for code, _ in known), known
            assert lookups[first_lookup:].count(lab_digest) >= 1 or elapsed < 0.2

            # The lookups counted by outcome, for operators.
            assert _lookups_metric("throttled") - before["throttled"] == len(throttled)
            assert _lookups_metric("refused") - before["refused"] == len(flood_lookups)
            assert _lookups_metric("found") - before["found"] == lookups[first_lookup:].count(lab_digest)
    finally:
        await running.stop(0)


async def test_the_limit_is_per_client_address(database_url, lookups):
    running = await _result_svc(
        database_url, GRPC_HOST="[::]", AUTH_UNKNOWN_LOOKUPS_PER_SECOND="0.01", AUTH_UNKNOWN_LOOKUP_BURST="3"
    )
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as first,
            grpc.aio.insecure_channel(f"[::1]:{running.port}") as second,
        ):
            one = result_service_pb2_grpc.ResultServiceStub(first)
            codes = [(await _call(one, new_token())).code() for _ in range(5)]
            assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
            # Another address (the IPv6 loopback of the same dual-stack port) has its own budget.
            other = result_service_pb2_grpc.ResultServiceStub(second)
            assert (await _call(other, new_token())).code() == grpc.StatusCode.UNAUTHENTICATED
            assert len(lookups) == 4
    finally:
        await running.stop(0)


def test_peer_addresses_drop_the_port_and_group_ipv6_by_64():
    assert auth.peer_address("ipv4:10.0.0.7:53211") == "10.0.0.7"
    assert auth.peer_address("ipv6:[2001:db8:1:2:aaaa::1]:53211") == "2001:db8:1:2::/64"
    assert auth.peer_address("ipv6:%5B2001:db8:1:2::9%5D:1") == "2001:db8:1:2::/64"
    assert auth.peer_address("ipv6:[::ffff:10.0.0.7]:53211") == "10.0.0.7"
    assert auth.peer_address("unix:/tmp/s") == "unix:/tmp/s"
    assert auth.peer_address(None) == ""


def test_the_per_address_buckets_are_bounded(monkeypatch):
    monkeypatch.setattr(auth, "_PEER_LIMIT", 100)
    limiter = auth.PeerRateLimiter(rate=1.0, burst=2)
    for n in range(1000):
        assert limiter.take(f"10.0.{n // 256}.{n % 256}") == 0
    assert len(limiter._buckets) == 100
    assert limiter.take("x") == 0 and limiter.take("x") == 0
    assert 0.9 < limiter.take("x") <= 1.0
