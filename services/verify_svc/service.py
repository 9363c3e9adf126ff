"""verify_svc hosts VerifyService: checkpoint verification of scanned HCERT QR codes."""

from __future__ import annotations

from services.common.auth import Role
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc

LABEL = "verify_svc"

VERIFY_ROLES = {
    "Verify": [Role.CHECKPOINT],
    "VerifyBatch": [Role.CHECKPOINT],
    "GetRules": [Role.CHECKPOINT],
    "GetTrustList": [Role.CHECKPOINT],
}


class VerifyServicer(verify_service_pb2_grpc.VerifyServiceServicer):
    """Verification RPCs: not implemented until the verify issue lands (every call answers UNIMPLEMENTED)."""

    def __init__(self, deps: Deps):
        self._deps = deps


def build(deps: Deps) -> list[GrpcService]:
    servicer = VerifyServicer(deps)
    return [
        GrpcService(
            "covidtest.verify.v1.VerifyService",
            lambda server: verify_service_pb2_grpc.add_VerifyServiceServicer_to_server(servicer, server),
            VERIFY_ROLES,
        )
    ]
