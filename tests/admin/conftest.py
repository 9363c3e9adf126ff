"""A real result_svc (which hosts AdminService) and an operator token, for the admin tests."""

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from tests.conftest import bearer, make_principal


@pytest.fixture(scope="module")
async def admin(database_url, result_server):
    operator = await make_principal(database_url, Role.OPERATOR)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
        yield admin_service_pb2_grpc.AdminServiceStub(channel), bearer(operator["token"]), channel
