"""Limits before parsing: each service refuses a request larger than its MAX_REQUEST_BYTES with
RESOURCE_EXHAUSTED from grpc itself, before the call guard, the credential lookup or the parser runs; a
request up to the limit is served as before. Each default sits above the service's largest valid request,
computed here from the contracts' own limits."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from services.common.auth import Role
from services.common.config import load
from services.common.metrics import RPC_HANDLED
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from services.gen.covidtest.verify.v1 import verify_service_pb2, verify_service_pb2_grpc
from services.publish_svc.config import PublishConfig
from services.result_svc.config import ResultConfig
from services.result_svc.validation import MAX_BATCH as MAX_INTAKE_BATCH
from services.verify_svc.config import VerifyConfig
from services.verify_svc.service import MAX_BATCH as MAX_SCANS
from services.verify_svc.service import MAX_QR_BYTES
from tests.conftest import bearer, make_principal, service_env, start_result_svc, start_verify_svc
from tests.grpc_errors import violations

WIDE = "\U0001f600"  # four bytes of UTF-8: a field of n characters at its widest
FAR_FUTURE = 2**40  # a Timestamp's seconds with a long varint; nanos at their largest below


def _max_verify_batch(scanned_at: bool = True) -> verify_service_pb2.VerifyBatchRequest:
    """100 scans of 4096-byte QRs; with the widest `scanned_at` encoding unless told (a valid one is
    within 7 days: a few bytes shorter)."""
    batch = verify_service_pb2.VerifyBatchRequest()
    for _ in range(MAX_SCANS):
        scan = batch.scans.add(qr="x" * MAX_QR_BYTES)
        if scanned_at:
            scan.scanned_at.seconds, scan.scanned_at.nanos = FAR_FUTURE, 999_999_999
    return batch


def _max_register_samples() -> result_service_pb2.RegisterSamplesRequest:
    request = result_service_pb2.RegisterSamplesRequest(request_id="0" * 36)
    for _ in range(MAX_INTAKE_BATCH):
        s = request.samples.add(
            sample_barcode="b" * 64,
            test_type=2,
            rat_device_id="d" * 64,
            sampling_site=WIDE * 200,
            lab_org_id="0" * 36,
            pool_barcode="p" * 64,
            retest_of_sample_barcode="r" * 64,
        )
        s.collected_at.seconds, s.collected_at.nanos = FAR_FUTURE, 999_999_999
        s.person.identity.type, s.person.identity.number, s.person.identity.country = 3, "N" * 20, "VN"
        s.person.full_name, s.person.family_name, s.person.given_name = WIDE * 200, WIDE * 80, WIDE * 80
        s.person.date_of_birth, s.person.phone = "1990-01-01", "+84912345678"
        s.person.province_code, s.person.district_code = "01", "001"
    return request


def _max_record_results() -> result_service_pb2.RecordResultsRequest:
    request = result_service_pb2.RecordResultsRequest(request_id="0" * 36)
    for _ in range(MAX_INTAKE_BATCH):
        r = request.results.add(
            sample_barcode="b" * 64,
            sampling_org_id="0" * 36,
            outcome=1,
            method=WIDE * 100,
            ct_value=50,
            lab_reference="l" * 64,
        )
        r.tested_at.seconds, r.tested_at.nanos = FAR_FUTURE, 999_999_999
    return request


def test_each_default_is_above_the_largest_valid_request_of_its_service():
    verify = load(VerifyConfig, service_env("postgresql://x/y")).max_request_bytes
    result = load(ResultConfig, service_env("postgresql://x/y")).max_request_bytes
    publish = load(PublishConfig, service_env("postgresql://x/y")).max_request_bytes
    assert (verify, result, publish) == (512 * 1024, 4 * 1024 * 1024, 64 * 1024)
    largest_batch = _max_verify_batch().ByteSize()
    assert 400 * 1024 < largest_batch < verify, largest_batch  # hence 512 KiB, not 64 KiB
    assert max(_max_register_samples().ByteSize(), _max_record_results().ByteSize()) < result


def _handled(service: str, method: str) -> int:
    return sum(n for (svc, m, _code), n in RPC_HANDLED.values.items() if (svc, m) == (service, method))


async def _handled_settles_at(service: str, method: str, expected: int) -> None:
    """Waits (with a deadline) until `expected` calls are counted: the guard counts a call in its
    `finally`, which can run just after the client has read the call's status."""
    deadline = time.monotonic() + 5
    while _handled(service, method) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert _handled(service, method) == expected


@pytest.fixture
async def verify(database_url):
    running = await start_verify_svc(service_env(database_url))
    try:
        device = await make_principal(database_url, Role.CHECKPOINT)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield verify_service_pb2_grpc.VerifyServiceStub(channel), bearer(device["token"])
    finally:
        await running.stop(0)


async def test_an_oversize_verify_is_refused_before_the_caller_or_the_request_is_looked_at(verify, lookups):
    stub, auth = verify
    before = _handled("verify_svc", "Verify")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Verify(verify_service_pb2.VerifyRequest(qr="x" * (1 << 20)), metadata=auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
    assert lookups == [], "the caller's credential was looked up for a request refused by size"
    # The marker call (see below) is the only one the guard counts: the oversize one never reached it.
    await stub.Verify(verify_service_pb2.VerifyRequest(qr="HC1:x"), metadata=auth, timeout=10)
    await _handled_settles_at("verify_svc", "Verify", before + 1)


async def test_verify_requests_up_to_the_limit_are_served(verify, lookups):
    stub, auth = verify
    limit = 512 * 1024
    # The largest valid VerifyBatch is served: one verdict per scan.
    batch = _max_verify_batch(scanned_at=False)
    assert batch.ByteSize() > 400 * 1024
    answer = await stub.VerifyBatch(batch, metadata=auth, timeout=30)
    assert len(answer.results) == MAX_SCANS

    def verify_of_size(size: int) -> verify_service_pb2.VerifyRequest:
        request = verify_service_pb2.VerifyRequest(qr="x" * (size - 4))  # tag + 3-byte length
        assert request.ByteSize() == size
        return request

    # Exactly at the limit: parsed and checked by the handler (the QR is too long for the contract).
    before = _handled("verify_svc", "Verify")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Verify(verify_of_size(limit), metadata=auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert violations(err.value) == [("qr", "FIELD_OUT_OF_RANGE")]
    await _handled_settles_at("verify_svc", "Verify", before + 1)
    # One byte more: refused by grpc, never handled. A small call after it is the marker: once it is
    # counted, a handled oversize call (sent before it on the same channel) would have been counted too.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Verify(verify_of_size(limit + 1), metadata=auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
    await stub.Verify(verify_service_pb2.VerifyRequest(qr="HC1:x"), metadata=auth, timeout=10)
    await _handled_settles_at("verify_svc", "Verify", before + 2)


async def test_result_svc_refuses_an_intake_request_over_its_limit_and_serves_one_under_it(database_url, lookups):
    running = await start_result_svc(service_env(database_url, MAX_REQUEST_BYTES=str(64 * 1024)))
    try:
        lab = await make_principal(database_url, Role.LAB)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            over = _max_record_results()  # about 584 KiB, over the configured 64 KiB
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RecordResults(over, metadata=bearer(lab["token"]), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
            assert lookups == []
            # Under the limit (100 items, about 58 KiB): admitted, parsed and checked as before (no request id).
            under = result_service_pb2.RecordResultsRequest(results=over.results[:100])
            assert 50 * 1024 < under.ByteSize() < 64 * 1024
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RecordResults(under, metadata=bearer(lab["token"]), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
            assert len(lookups) == 1
    finally:
        await running.stop(0)
