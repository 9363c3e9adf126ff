"""Per-device rate limit, verdict counts per checkpoint (no per-person log), and any input → a verdict."""

import asyncio
import time
import uuid
from datetime import UTC

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.common.auth import Role
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.verify_svc.status import StatusLookup
from services.verify_svc.trust import Snapshot
from services.verify_svc.verifier import Verifier
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.grpc_errors import error_reason
from tests.verify_svc.conftest import released_certificate


async def test_device_rate_limit(platform, database_url):
    env = {**platform.env, "SCANS_PER_MINUTE": "3", "REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}"}
    server = await start_verify_svc(env)
    try:
        other = await make_principal(database_url, Role.CHECKPOINT)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = verify_service_pb2_grpc.VerifyServiceStub(channel)
            for _ in range(3):  # an attempt that crossed a window boundary proves nothing: run it again
                device = await make_principal(database_url, Role.CHECKPOINT)
                window = int(time.time() // 60)
                outcomes = []
                for _ in range(5):
                    try:
                        await stub.Verify(vpb.VerifyRequest(qr="HC1:X"), metadata=bearer(device["token"]))
                        outcomes.append("OK")
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        outcomes.append(error_reason(err))
                if int(time.time() // 60) == window:
                    break
            else:
                pytest.fail("every attempt crossed a rate-limit window boundary")
            assert outcomes == ["OK"] * 3 + ["RATE_LIMITED"] * 2
            await stub.Verify(vpb.VerifyRequest(qr="HC1:X"), metadata=bearer(other["token"]))  # its own budget
    finally:
        await server.stop(0)


async def test_verdicts_are_counted_per_checkpoint_hourly_without_personal_data(platform, db):
    event = await released_certificate(platform, 800)
    device_id = platform.device["id"]
    before = (
        REGISTRY.get_sample_value("covidtest_verifications_total", {"checkpoint": device_id, "verdict": "VALID"}) or 0
    )
    for _ in range(3):
        await platform.verify.Verify(vpb.VerifyRequest(qr=event.certificate.qr), metadata=platform.device_auth)
    assert (
        REGISTRY.get_sample_value("covidtest_verifications_total", {"checkpoint": device_id, "verdict": "VALID"})
        == before + 3
    )
    deadline = time.monotonic() + 10  # flushed every few seconds
    while (
        await db.fetchval(
            "SELECT COALESCE(sum(count), 0) FROM verification_counts WHERE checkpoint_id = $1::uuid "
            "AND verdict = 'VALID'",
            device_id,
        )
    ) < before + 3:
        assert time.monotonic() < deadline, "hourly counts were not written"
        await asyncio.sleep(0.2)
    columns = {
        r["column_name"]
        for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'verification_counts'"
        )
    }
    assert columns == {"hour", "checkpoint_id", "verdict", "count"}  # nothing about the person or the certificate


class _NoStatus(StatusLookup):
    def __init__(self):
        pass


class _Trust:
    snapshot = Snapshot([], [], 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=300).map(lambda s: "HC1:" + s),
    )
)
def test_any_text_gets_a_verdict_never_an_exception(text):
    from datetime import datetime

    result = asyncio.run(Verifier(_Trust(), _NoStatus()).verify(text, datetime.now(UTC), "24"))
    assert result.verdict in ("MALFORMED", "UNKNOWN_ISSUER")
    assert v.Verdict.Value("VERDICT_" + result.verdict)
