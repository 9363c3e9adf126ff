"""Caller identity over real gRPC: tokens, roles, revocation, mutual TLS, and no token in logs."""

import asyncio
import logging
import time

import grpc
import pytest

from services.common.auth import PrincipalKind, Role
from services.common.config import load
from services.common.db import connect
from services.common.runtime import start_service
from services.gen.covidtest.publish.v1 import publish_service_pb2, publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from services.gen.covidtest.verify.v1 import verify_service_pb2, verify_service_pb2_grpc
from services.publish_svc import service as publish_service
from services.publish_svc.config import PublishConfig
from services.registry import principals
from services.verify_svc import service as verify_service
from services.verify_svc.config import VerifyConfig
from tests.conftest import bearer, make_principal, own_service_env, service_env, start_result_svc
from tests.grpc_errors import error_reason
from tests.pki import TestCA


@pytest.fixture
async def result_stub(result_server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
        yield result_service_pb2_grpc.ResultServiceStub(channel)


async def test_call_without_credential_is_unauthenticated(result_stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result_stub.GetSample(result_service_pb2.GetSampleRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "CREDENTIAL_MISSING"


@pytest.mark.parametrize(
    "header", ["Bearer ctk_unknownunknownunknownunknownunknownunk", "Basic dXNlcjpwYXNz", "Bearer "]
)
async def test_unknown_or_malformed_credential_is_unauthenticated(result_stub, header):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result_stub.GetSample(result_service_pb2.GetSampleRequest(), metadata=(("authorization", header),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_valid_credential_of_wrong_role_is_permission_denied(database_url, result_stub):
    partner = await make_principal(database_url, Role.PARTNER)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result_stub.RegisterSamples(
            result_service_pb2.RegisterSamplesRequest(), metadata=bearer(partner["token"])
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) == "ROLE_NOT_ALLOWED"


async def test_right_role_passes_identity(database_url, result_stub):
    """A LAB credential gets past identity: the answer is the RPC's own, not an auth error."""
    lab = await make_principal(database_url, Role.LAB)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result_stub.GetSample(result_service_pb2.GetSampleRequest(), metadata=bearer(lab["token"]))
    assert err.value.code() not in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INTERNAL,
    )


async def test_revoked_credential_stops_working_within_the_cache_time(database_url, result_stub):
    lab = await make_principal(database_url, Role.LAB)
    for _ in range(2):  # resolved once, then admitted from the cache without a lookup
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await result_stub.GetSample(result_service_pb2.GetSampleRequest(), metadata=bearer(lab["token"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # past identity: the request is empty
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            await principals.revoke_credential(conn, None, lab["credential_id"])
    finally:
        await conn.close()
    deadline = time.monotonic() + 5  # AUTH_CACHE_SECONDS is 0.2 in tests
    while True:
        try:
            await result_stub.GetSample(result_service_pb2.GetSampleRequest(), metadata=bearer(lab["token"]))
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                break
        assert time.monotonic() < deadline, "revoked credential still accepted"
        await asyncio.sleep(0.05)


async def test_token_never_appears_in_logs(database_url, result_stub, caplog):
    partner = await make_principal(database_url, Role.PARTNER)
    caplog.set_level(logging.DEBUG)
    for metadata in (bearer(partner["token"]), bearer(partner["token"] + "x")):
        with pytest.raises(grpc.aio.AioRpcError):
            await result_stub.RegisterSamples(result_service_pb2.RegisterSamplesRequest(), metadata=metadata)
    assert caplog.records, "refusals must be logged"
    text = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert partner["token"] not in text
    assert partner["token"][4:20] not in text


@pytest.mark.parametrize(
    "module,config_cls,stub_cls,call,request_cls,role",
    [
        (
            publish_service,
            PublishConfig,
            publish_service_pb2_grpc.PublishServiceStub,
            "GetFeedStatus",
            publish_service_pb2.GetFeedStatusRequest,
            Role.CHECKPOINT,
        ),
        (
            verify_service,
            VerifyConfig,
            verify_service_pb2_grpc.VerifyServiceStub,
            "GetRules",
            verify_service_pb2.GetRulesRequest,
            Role.LAB,
        ),
    ],
)
async def test_every_service_enforces_identity(database_url, module, config_cls, stub_cls, call, request_cls, role):
    running = await start_service(
        module.LABEL,
        load(config_cls, own_service_env(module.LABEL, service_env(database_url))),
        module.build,
        serve_metrics_port=False,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            method = getattr(stub_cls(channel), call)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await method(request_cls())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            wrong = await make_principal(database_url, role)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await method(request_cls(), metadata=bearer(wrong["token"]))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await running.stop(0)


async def test_mutual_tls_client_certificate_identifies_the_caller(database_url, tmp_path):
    ca = TestCA()
    env = service_env(database_url, GRPC_INSECURE="false", **ca.write_server_files(tmp_path))
    running = await start_result_svc(env)
    registered = ca.issue("lab-lis-01", server=False)
    stranger = ca.issue("unregistered", server=False)
    lab = await make_principal(database_url, Role.LAB)
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            fingerprint, expires_at = principals.parse_client_certificate(registered.cert_pem)
            await principals.register_client_certificate(
                conn, None, PrincipalKind.ORGANISATION, lab["id"], Role.LAB, fingerprint, expires_at
            )
    finally:
        await conn.close()
    try:

        async def call(client):
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca.pem, private_key=client.key_pem, certificate_chain=client.cert_pem
            )
            async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", creds) as channel:
                stub = result_service_pb2_grpc.ResultServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetSample(result_service_pb2.GetSampleRequest())
                return err.value.code()

        assert await call(stranger) == grpc.StatusCode.UNAUTHENTICATED
        assert await call(registered) not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
        )
        # Without a client certificate the TLS handshake itself is refused.
        creds = grpc.ssl_channel_credentials(root_certificates=ca.pem)
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await result_service_pb2_grpc.ResultServiceStub(channel).GetSample(
                    result_service_pb2.GetSampleRequest(), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop(0)
