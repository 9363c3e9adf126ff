"""A provincial health department: created and given a HEALTH_AUTHORITY credential through AdminService and
the operator CLI, and only that role; its token reads its province's statistics."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.statistics.v1 import statistics_service_pb2, statistics_service_pb2_grpc
from services.gen.covidtest.type.v1 import role_pb2
from tests.admin.cli_runner import run_admin
from tests.conftest import bearer
from tests.grpc_errors import error_reason


def rid() -> str:
    return str(uuid.uuid4())


async def test_admin_service_creates_a_health_department_and_its_credential(admin):
    stub, auth, channel = admin
    created = await stub.CreateOrganisation(
        pb.CreateOrganisationRequest(
            request_id=rid(), name="Sở Y tế Bắc Giang", kind=pb.ORGANISATION_KIND_HEALTH_DEPARTMENT, province_code="24"
        ),
        metadata=auth,
    )
    department = created.organisation
    assert (department.kind, department.province_code) == (pb.ORGANISATION_KIND_HEALTH_DEPARTMENT, "24")
    listed = await stub.ListOrganisations(
        pb.ListOrganisationsRequest(kind=pb.ORGANISATION_KIND_HEALTH_DEPARTMENT), metadata=auth
    )
    assert [o.organisation_id for o in listed.organisations] == [department.organisation_id]

    principal = pb.Principal(kind=pb.PRINCIPAL_KIND_ORGANISATION, id=department.organisation_id)
    issued = await stub.IssueCredential(
        pb.IssueCredentialRequest(request_id=rid(), role=role_pb2.ROLE_HEALTH_AUTHORITY, principal=principal),
        metadata=auth,
    )
    assert issued.credential.role == role_pb2.ROLE_HEALTH_AUTHORITY
    statistics = statistics_service_pb2_grpc.StatisticsServiceStub(channel)
    backlog = await statistics.GetLabBacklog(
        statistics_service_pb2.GetLabBacklogRequest(), metadata=bearer(issued.token)
    )
    assert list(backlog.labs) == []

    # A health department holds no other role, and no other organisation holds HEALTH_AUTHORITY.
    for role in (role_pb2.ROLE_SAMPLER, role_pb2.ROLE_LAB):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IssueCredential(
                pb.IssueCredentialRequest(request_id=rid(), role=role, principal=principal), metadata=auth
            )
        assert error_reason(err.value) == "ROLE_NOT_ALLOWED_FOR_PRINCIPAL"
    lab = await stub.CreateOrganisation(
        pb.CreateOrganisationRequest(
            request_id=rid(), name="CDC Bắc Giang HA", kind=pb.ORGANISATION_KIND_LAB, province_code="24"
        ),
        metadata=auth,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.IssueCredential(
            pb.IssueCredentialRequest(
                request_id=rid(),
                role=role_pb2.ROLE_HEALTH_AUTHORITY,
                principal=pb.Principal(kind=pb.PRINCIPAL_KIND_ORGANISATION, id=lab.organisation.organisation_id),
            ),
            metadata=auth,
        )
    assert error_reason(err.value) == "ROLE_NOT_ALLOWED_FOR_PRINCIPAL"
    for kind in (pb.PRINCIPAL_KIND_PARTNER, pb.PRINCIPAL_KIND_OPERATOR):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IssueCredential(
                pb.IssueCredentialRequest(
                    request_id=rid(), role=role_pb2.ROLE_HEALTH_AUTHORITY, principal=pb.Principal(kind=kind, id="x")
                ),
                metadata=auth,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_cli_creates_a_health_department_and_issues_its_token(database_url, result_server):
    def ok(*args: str):
        proc = run_admin(database_url, {}, *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    org = ok("org", "create", "--name", "Sở Y tế Lạng Sơn", "--kind", "HEALTH_DEPARTMENT", "--province", "20")
    issued = ok(
        "credential", "issue", "--principal-kind", "ORGANISATION", "--principal-id", org["id"],
        "--role", "HEALTH_AUTHORITY", "--label", "dashboard",
    )  # fmt: skip
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
        statistics = statistics_service_pb2_grpc.StatisticsServiceStub(channel)
        request = statistics_service_pb2.ListTestCountsRequest(
            range=statistics_service_pb2.DayRange(from_date="2021-10-01", to_date="2021-10-31")
        )
        assert list((await statistics.ListTestCounts(request, metadata=bearer(issued["token"]))).rows) == []
        request.province_code = "24"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await statistics.ListTestCounts(request, metadata=bearer(issued["token"]))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    refused = run_admin(
        database_url, {}, "credential", "issue", "--principal-kind", "ORGANISATION", "--principal-id", org["id"],
        "--role", "LAB",
    )  # fmt: skip
    assert refused.returncode == 1
