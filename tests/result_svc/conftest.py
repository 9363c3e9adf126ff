"""Fixtures for result_svc: a real server and organisations with tokens."""

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from tests.conftest import bearer, make_principal


@pytest.fixture(scope="module")
async def stub(result_server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{result_server.port}") as channel:
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
