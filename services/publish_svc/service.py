"""publish_svc hosts PublishService: the Bluezone result feed, citizen lookups and certificate QR codes."""

from __future__ import annotations

from services.common.auth import Role
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc

LABEL = "publish_svc"

PUBLISH_ROLES = {
    "StreamResultEvents": [Role.PARTNER],
    "AckResultEvents": [Role.PARTNER],
    "GetFeedStatus": [Role.PARTNER, Role.OPERATOR],
    "GetCitizenResults": [Role.PARTNER],
    "GetCertificateQr": [Role.PARTNER],
}


class PublishServicer(publish_service_pb2_grpc.PublishServiceServicer):
    """Feed RPCs: not implemented until the publish issue lands (every call answers UNIMPLEMENTED)."""

    def __init__(self, deps: Deps):
        self._deps = deps


def build(deps: Deps) -> list[GrpcService]:
    servicer = PublishServicer(deps)
    return [
        GrpcService(
            "covidtest.publish.v1.PublishService",
            lambda server: publish_service_pb2_grpc.add_PublishServiceServicer_to_server(servicer, server),
            PUBLISH_ROLES,
        )
    ]
