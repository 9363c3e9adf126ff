"""Fixtures for verify_svc: intake, relay and verification on one database, with a released certificate."""

import contextlib

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import REDIS_URL, bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import running_platform, until_status_cached
from tests.result_svc.helpers import ago, rid


@pytest.fixture(scope="module")
async def platform(database_url):
    async with verify_platform(database_url) as running:
        yield running


@contextlib.asynccontextmanager
async def verify_platform(database_url: str):
    """running_platform with a partner, a checkpoint device of province 24 and a verify_svc."""
    async with running_platform(database_url) as running:
        running.partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        running.device = await make_principal(database_url, Role.CHECKPOINT, province="24")
        running.verify_server = await start_verify_svc(running.env)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.verify_server.port}") as channel:
            running.verify = verify_service_pb2_grpc.VerifyServiceStub(channel)
            running.device_auth = bearer(running.device["token"])
            yield running
        await running.verify_server.stop(0)


async def released_certificate(platform, n: int, **release_kw):
    """Release one result and return its feed event (with the certificate)."""
    start = await platform.head() + 1
    barcodes = await platform.release(1, start=n, **release_kw)
    event = (await platform.collect(platform.partner["token"], start, 1))[0]
    assert event.result.sample_barcode == barcodes[0]
    if event.certificate.certificate_id:  # verified from the cache from the first scan on
        await until_status_cached(REDIS_URL, platform.redis_prefix, event.certificate.certificate_id)
    return event


async def amend_to_positive(platform, event) -> rpb.AmendResultResponse:
    """The lab corrects the result of `event` to POSITIVE: its certificate is revoked (AmendResult)."""
    return await platform.results.AmendResult(
        rpb.AmendResultRequest(
            request_id=rid(),
            sample_barcode=event.result.sample_barcode,
            outcome=t.OUTCOME_POSITIVE,
            tested_at=ago(minutes=30),
            method="RT-PCR",
            reason="re-run after control failure",
        ),
        metadata=bearer(platform.lab["token"]),
    )
