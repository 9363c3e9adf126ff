"""The role check applies to every call, including one whose credential is served from the auth cache."""

from __future__ import annotations

import grpc
import pytest

from services.common import auth
from services.common.auth import Role
from services.gen.covidtest.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from tests.conftest import bearer, make_principal, service_env, start_result_svc
from tests.grpc_errors import error_reason


@pytest.fixture
async def channel(database_url):
    # An hour of cache: every call after the first is admitted from the cache, never looked up again.
    running = await start_result_svc(service_env(database_url, AUTH_CACHE_SECONDS="3600"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        await running.stop(0)


async def _refused(call, request, token: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=bearer(token), timeout=10)
    return err.value


@pytest.mark.parametrize("role", [Role.SAMPLER, Role.LAB, Role.OPERATOR])
async def test_a_cached_credential_is_still_refused_an_rpc_its_role_may_not_call(database_url, channel, lookups, role):
    results = result_service_pb2_grpc.ResultServiceStub(channel)
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)
    caller = await make_principal(database_url, role)
    digest = auth.token_digest(caller["token"])

    # Allowed first (a lookup in Postgres puts the credential in the cache), then forbidden from the cache.
    if role is Role.OPERATOR:
        await admin.ListOrganisations(admin_service_pb2.ListOrganisationsRequest(), metadata=bearer(caller["token"]))
        forbidden = [
            (results.ListResults, pb.ListResultsRequest()),
            (results.RegisterSamples, pb.RegisterSamplesRequest()),
            (results.RecordResults, pb.RecordResultsRequest()),
        ]
    else:
        await results.ListResults(pb.ListResultsRequest(), metadata=bearer(caller["token"]))
        forbidden = [(admin.ListOrganisations, admin_service_pb2.ListOrganisationsRequest())]
        if role is Role.SAMPLER:
            forbidden += [
                (results.RecordResults, pb.RecordResultsRequest()),
                (results.AmendResult, pb.AmendResultRequest()),
                (results.WithdrawResult, pb.WithdrawResultRequest()),
            ]
        else:
            forbidden.append((results.RegisterSamples, pb.RegisterSamplesRequest()))
    assert lookups.count(digest) == 1

    for _ in range(2):  # twice: the refusal is not itself what keeps the credential out of the cache
        for call, request in forbidden:
            err = await _refused(call, request, caller["token"])
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (call, err)
            assert error_reason(err) == "ROLE_NOT_ALLOWED"
    # Every refusal above was decided on the cached credential: no further lookup.
    assert lookups.count(digest) == 1
