"""result_svc hosts ResultService (sample and result intake) and AdminService (operators).

Roles per RPC are declared here; the call interceptor enforces them before any handler runs.
"""

from __future__ import annotations

from services.admin.servicer import admin_service
from services.common.auth import Role
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.result.v1 import result_service_pb2_grpc

LABEL = "result_svc"

RESULT_ROLES = {
    "RegisterSamples": [Role.SAMPLER],
    "RecordResults": [Role.LAB],
    "AmendResult": [Role.LAB],
    "WithdrawResult": [Role.LAB],
    "GetSample": [Role.SAMPLER, Role.LAB],
    "ListResults": [Role.SAMPLER, Role.LAB],
}


class ResultServicer(result_service_pb2_grpc.ResultServiceServicer):
    """Intake RPCs: not implemented until the intake issue lands (every call answers UNIMPLEMENTED)."""

    def __init__(self, deps: Deps):
        self._deps = deps


def build(deps: Deps) -> list[GrpcService]:
    servicer = ResultServicer(deps)
    return [
        GrpcService(
            "covidtest.result.v1.ResultService",
            lambda server: result_service_pb2_grpc.add_ResultServiceServicer_to_server(servicer, server),
            RESULT_ROLES,
        ),
        admin_service(deps),
    ]
