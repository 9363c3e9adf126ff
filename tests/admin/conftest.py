"""A real result_svc (which hosts AdminService) and an operator token, for the admin tests."""

import grpc
import pytest

from services.common.auth import Role
from services.common.config import load
from services.common.runtime import start_service
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig
from tests.conftest import bearer, make_principal, service_env


@pytest.fixture(scope="module")
async def admin(database_url):
    running = await start_service("result_svc", load(ResultConfig, service_env(database_url)), result_service.build,
                                  serve_metrics_port=False)
    operator = await make_principal(database_url, Role.OPERATOR)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield admin_service_pb2_grpc.AdminServiceStub(channel), bearer(operator["token"]), channel
    await running.stop(0)
