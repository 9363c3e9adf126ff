"""ResultService: sample and result intake (the process also hosts AdminService; see __main__).

The servicer is thin: it runs the intake logic (services.result_svc.intake) in one idempotent
transaction per mutation and answers only after COMMIT. Roles per RPC are declared here; the call
guard (services.common.guard) enforces them before any handler runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.common.auth import Role, current_principal
from services.common.db import in_tx
from services.common.errors import FieldViolation, InvalidArgument
from services.common.idempotency import Pruner, run_idempotent
from services.common.messages import result_message
from services.common.paging import decode_token, encode_token, page_size
from services.common.protoconv import enum_name, to_datetime
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc.intake import Intake

LABEL = "result_svc"

RESULT_ROLES = {
    "RegisterSamples": [Role.SAMPLER],
    "RecordResults": [Role.LAB],
    "AmendResult": [Role.LAB],
    "WithdrawResult": [Role.LAB],
    "GetSample": [Role.SAMPLER, Role.LAB],
    "ListResults": [Role.SAMPLER, Role.LAB],
}

CURRENT_STATES = ["RELEASED", "RETEST_REQUIRED", "RESAMPLE_REQUIRED", "WITHDRAWN"]


def _enum_filter(values, enum_type, field: str) -> list[str]:
    names = []
    for i, value in enumerate(values):
        name = enum_name(enum_type, value)
        if not name or name in names:
            raise InvalidArgument(
                f"invalid {field}",
                [FieldViolation(f"{field}[{i}]", "a known value, no repeats", "FIELD_FORMAT_INVALID")],
            )
        names.append(name)
    return names


class ResultServicer(result_service_pb2_grpc.ResultServiceServicer):
    def __init__(self, deps: Deps):
        self._pool = deps.pool
        self._intake = Intake(deps.pii, deps.config.pool_max_size)

    async def _mutate(self, method: str, request, response_type, operation):
        caller = current_principal.get()
        return await run_idempotent(
            self._pool, caller.id, method, request, response_type, lambda conn: operation(conn, caller, request)
        )

    async def RegisterSamples(self, request, context):
        return await self._mutate("RegisterSamples", request, pb.RegisterSamplesResponse, self._intake.register_samples)

    async def RecordResults(self, request, context):
        return await self._mutate("RecordResults", request, pb.RecordResultsResponse, self._intake.record_results)

    async def AmendResult(self, request, context):
        return await self._mutate("AmendResult", request, pb.AmendResultResponse, self._intake.amend_result)

    async def WithdrawResult(self, request, context):
        return await self._mutate("WithdrawResult", request, pb.WithdrawResultResponse, self._intake.withdraw_result)

    async def GetSample(self, request, context):
        caller = current_principal.get()
        return await in_tx(self._pool, lambda conn: self._intake.get_sample(conn, caller, request))

    async def ListResults(self, request, context):
        caller = current_principal.get()
        limit = page_size(request.page_size)
        start = to_datetime(request.start_time, "start_time") if request.HasField("start_time") else None
        end = to_datetime(request.end_time, "end_time") if request.HasField("end_time") else None
        if start and end and end <= start:
            raise InvalidArgument(
                "end_time must be after start_time",
                [FieldViolation("end_time", "after start_time", "FIELD_OUT_OF_RANGE")],
            )
        filters = {
            "start": start,
            "end": end,
            "outcomes": _enum_filter(request.outcomes, testing_pb2.Outcome, "outcomes"),
            "states": _enum_filter(request.states, testing_pb2.ResultState, "states") or CURRENT_STATES,
        }
        after = decode_token(
            request.page_token, {**filters, "role": caller.role.value}, (datetime.fromisoformat, uuid.UUID)
        )
        rows = await in_tx(self._pool, lambda conn: self._intake.list_results(conn, caller, limit + 1, after, filters))
        page = rows[:limit]
        token = ""
        if len(rows) > limit:
            token = encode_token(
                [page[-1]["recorded_at"].isoformat(), str(page[-1]["id"])], {**filters, "role": caller.role.value}
            )
        return pb.ListResultsResponse(results=[result_message(r) for r in page], next_page_token=token)


def build(deps: Deps) -> list[GrpcService]:
    servicer = ResultServicer(deps)
    pruner = Pruner(deps.pool, timedelta(hours=deps.config.idempotency_retention_hours))
    deps.background(pruner.run(), pruner.stop)
    return [
        GrpcService(
            "covidtest.result.v1.ResultService",
            lambda server: result_service_pb2_grpc.add_ResultServiceServicer_to_server(servicer, server),
            RESULT_ROLES,
        ),
    ]
