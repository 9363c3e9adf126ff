"""AdminService over real gRPC: operators only, idempotent, paged, tokens shown once."""

import uuid

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from services.gen.covidtest.type.v1 import role_pb2
from tests.conftest import bearer, make_principal
from tests.grpc_errors import error_reason


def rid() -> str:
    return str(uuid.uuid4())


async def test_only_operators_may_call(database_url, admin):
    stub, _, _ = admin
    lab = await make_principal(database_url, Role.LAB)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListOrganisations(pb.ListOrganisationsRequest(), metadata=bearer(lab["token"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_create_organisation_is_idempotent_and_validated(admin):
    stub, auth, _ = admin
    request = pb.CreateOrganisationRequest(
        request_id=rid(), name="Trung tâm Y tế Việt Yên", kind=pb.ORGANISATION_KIND_SAMPLING_UNIT, province_code="24"
    )
    first = await stub.CreateOrganisation(request, metadata=auth)
    again = await stub.CreateOrganisation(request, metadata=auth)
    assert first == again  # same response, one row
    listed = await stub.ListOrganisations(pb.ListOrganisationsRequest(province_code="24"), metadata=auth)
    assert [o.organisation_id for o in listed.organisations].count(first.organisation.organisation_id) == 1

    changed = pb.CreateOrganisationRequest(
        request_id=request.request_id, name="Other", kind=request.kind, province_code="24"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateOrganisation(changed, metadata=auth)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and error_reason(err.value) == "REQUEST_ID_REUSED"

    duplicate_name = pb.CreateOrganisationRequest(
        request_id=rid(), name="TRUNG TÂM Y TẾ VIỆT YÊN", kind=request.kind, province_code="24"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateOrganisation(duplicate_name, metadata=auth)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and error_reason(err.value) == "ORGANISATION_EXISTS"

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateOrganisation(
            pb.CreateOrganisationRequest(request_id=rid(), name="", province_code="x"), metadata=auth
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateOrganisation(
            pb.CreateOrganisationRequest(name="No request id", province_code="24", kind=pb.ORGANISATION_KIND_LAB),
            metadata=auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_devices_page_through_with_opaque_tokens(admin):
    stub, auth, _ = admin
    for i in range(5):
        await stub.CreateCheckpointDevice(
            pb.CreateCheckpointDeviceRequest(request_id=rid(), name=f"Chốt QL31 máy {i}", province_code="19"),
            metadata=auth,
        )
    seen, token = [], ""
    while True:
        page = await stub.ListCheckpointDevices(
            pb.ListCheckpointDevicesRequest(page_size=2, page_token=token, province_code="19"), metadata=auth
        )
        assert len(page.devices) <= 2
        seen += [d.name for d in page.devices]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == 5
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the token belongs to another filter
        first = await stub.ListCheckpointDevices(
            pb.ListCheckpointDevicesRequest(page_size=2, province_code="19"), metadata=auth
        )
        await stub.ListCheckpointDevices(
            pb.ListCheckpointDevicesRequest(page_size=2, page_token=first.next_page_token, province_code="24"),
            metadata=auth,
        )
    assert error_reason(err.value) == "PAGE_TOKEN_INVALID"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListCheckpointDevices(pb.ListCheckpointDevicesRequest(page_token="garbage!"), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_issued_token_works_is_shown_once_and_revocation_stops_it(admin):
    stub, auth, channel = admin
    lab = await stub.CreateOrganisation(
        pb.CreateOrganisationRequest(
            request_id=rid(), name="CDC Bắc Giang lab", kind=pb.ORGANISATION_KIND_LAB, province_code="24"
        ),
        metadata=auth,
    )
    issue = pb.IssueCredentialRequest(
        request_id=rid(),
        role=role_pb2.ROLE_LAB,
        principal=pb.Principal(kind=pb.PRINCIPAL_KIND_ORGANISATION, id=lab.organisation.organisation_id),
        description="LIS 1",
    )
    issued = await stub.IssueCredential(issue, metadata=auth)
    assert issued.token and issued.credential.credential_id
    replay = await stub.IssueCredential(issue, metadata=auth)
    assert replay.token == "" and replay.credential == issued.credential

    results = result_service_pb2_grpc.ResultServiceStub(channel)
    listed_results = await results.ListResults(result_service_pb2.ListResultsRequest(), metadata=bearer(issued.token))
    assert list(listed_results.results) == []  # the new lab's token works, and sees nothing of others

    listed = await stub.ListCredentials(
        pb.ListCredentialsRequest(
            principal_kind=pb.PRINCIPAL_KIND_ORGANISATION, principal_id=lab.organisation.organisation_id
        ),
        metadata=auth,
    )
    assert [c.credential_id for c in listed.credentials] == [issued.credential.credential_id]

    revoked = await stub.RevokeCredential(
        pb.RevokeCredentialRequest(
            request_id=rid(), credential_id=issued.credential.credential_id, reason="LIS replaced"
        ),
        metadata=auth,
    )
    assert revoked.credential.revoked_at.seconds > 0 and revoked.credential.revocation_reason == "LIS replaced"

    wrong_role = pb.IssueCredentialRequest(
        request_id=rid(),
        role=role_pb2.ROLE_PARTNER,
        principal=pb.Principal(kind=pb.PRINCIPAL_KIND_ORGANISATION, id=lab.organisation.organisation_id),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.IssueCredential(wrong_role, metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_crafted_page_tokens_are_refused_cleanly(admin):
    import base64
    import json

    from services.common.paging import _filters_digest

    stub, auth, _ = admin

    def token(key, filters):
        return base64.urlsafe_b64encode(json.dumps({"k": key, "f": _filters_digest(filters)}).encode()).decode()

    for call, request in (
        (
            stub.ListTrustedCertificates,
            pb.ListTrustedCertificatesRequest(page_token=token(["KR", "yesterday", "x"], {"country": None})),
        ),
        (
            stub.ListProvinceRules,
            pb.ListProvinceRulesRequest(page_token=token(["seven"], {"province": None, "history": False})),
        ),
        (
            stub.ListCheckpointDevices,
            pb.ListCheckpointDevicesRequest(page_token=token([1, 2], {"province_code": None})),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(err.value) == "PAGE_TOKEN_INVALID"
