"""Fixtures for result_svc: a real server and organisations with tokens."""

import grpc
import pytest

from services.common.auth import Role
from services.common.config import load
from services.common.runtime import start_service
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig
from tests.conftest import bearer, make_principal, service_env


@pytest.fixture(scope="module")
async def server(database_url):
    running = await start_service("result_svc", load(ResultConfig, service_env(database_url)), result_service.build,
                                  serve_metrics_port=False)
    yield running
    await running.stop(0)


@pytest.fixture(scope="module")
async def stub(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield result_service_pb2_grpc.ResultServiceStub(channel)


class Org:
    def __init__(self, principal: dict):
        self.id = principal["id"]
        self.token = principal["token"]
        self.auth = bearer(principal["token"])


@pytest.fixture(scope="module")
async def sampler(database_url):
    return Org(await make_principal(database_url, Role.SAMPLER))


@pytest.fixture(scope="module")
async def other_sampler(database_url):
    return Org(await make_principal(database_url, Role.SAMPLER))


@pytest.fixture(scope="module")
async def lab(database_url):
    return Org(await make_principal(database_url, Role.LAB))


@pytest.fixture(scope="module")
async def other_lab(database_url):
    return Org(await make_principal(database_url, Role.LAB))
