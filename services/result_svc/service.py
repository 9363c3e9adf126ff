"""ResultService: sample and result intake (the process also hosts AdminService; see __main__).

The servicer is thin: it runs the intake logic (services.result_svc.intake) in one idempotent
transaction per mutation and answers only after COMMIT. Roles per RPC are declared here; the call
guard (services.common.guard) enforces them before any handler runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg
import grpc
from google.protobuf.message import Message

from services.common.auth import Principal, Role, current_caller
from services.common.db import in_tx
from services.common.idempotency import IdempotentRequest, Pruner, run_idempotent
from services.common.messages import result_message
from services.common.paging import decode_token, encode_token, page_size
from services.common.retention import RetentionJob, RetentionPolicy
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.result_svc import retention
from services.result_svc.config import ResultConfig
from services.result_svc.intake import Intake
from services.result_svc.queries import result_filters
from services.result_svc.repository import ResultKey
from services.result_svc.value_sets import ValueSetStore

LABEL = "result_svc"

RESULT_ROLES = {
    "RegisterSamples": [Role.SAMPLER],
    "RecordResults": [Role.LAB],
    "AmendResult": [Role.LAB],
    "WithdrawResult": [Role.LAB],
    "GetSample": [Role.SAMPLER, Role.LAB],
    "ListResults": [Role.SAMPLER, Role.LAB],
}

Request = TypeVar("Request", bound=IdempotentRequest)
Response = TypeVar("Response", bound=Message)


class ResultServicer(result_service_pb2_grpc.ResultServiceServicer):
    def __init__(self, deps: Deps[ResultConfig], value_sets: ValueSetStore):
        self._pool = deps.pool
        self._intake = Intake(deps.pii, deps.config.pool_max_size, value_sets)

    async def _mutate(
        self,
        method: str,
        request: Request,
        response_type: type[Response],
        operation: Callable[[asyncpg.Connection, Principal, Request], Awaitable[Response]],
    ) -> Response:
        caller = current_caller()
        return await run_idempotent(
            self._pool, caller.id, method, request, response_type, lambda conn: operation(conn, caller, request)
        )

    async def RegisterSamples(
        self, request: pb.RegisterSamplesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterSamplesResponse:
        return await self._mutate("RegisterSamples", request, pb.RegisterSamplesResponse, self._intake.register_samples)

    async def RecordResults(
        self, request: pb.RecordResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordResultsResponse:
        return await self._mutate("RecordResults", request, pb.RecordResultsResponse, self._intake.record_results)

    async def AmendResult(
        self, request: pb.AmendResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.AmendResultResponse:
        return await self._mutate("AmendResult", request, pb.AmendResultResponse, self._intake.amend_result)

    async def WithdrawResult(
        self, request: pb.WithdrawResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.WithdrawResultResponse:
        return await self._mutate("WithdrawResult", request, pb.WithdrawResultResponse, self._intake.withdraw_result)

    async def GetSample(self, request: pb.GetSampleRequest, context: grpc.aio.ServicerContext) -> pb.GetSampleResponse:
        caller = current_caller()
        return await in_tx(self._pool, lambda conn: self._intake.get_sample(conn, caller, request))

    async def ListResults(
        self, request: pb.ListResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListResultsResponse:
        caller = current_caller()
        limit = page_size(request.page_size)
        filters = result_filters(request)
        token_scope = filters.token_scope(caller.role)
        key = decode_token(request.page_token, token_scope, (datetime.fromisoformat, uuid.UUID))
        after = ResultKey(key[0], key[1]) if key else None
        # One row more than the page: whether there is a next page, without counting.
        rows = await in_tx(self._pool, lambda conn: self._intake.list_results(conn, caller, filters, after, limit + 1))
        page = rows[:limit]
        token = ""
        if len(rows) > limit:
            token = encode_token([page[-1]["recorded_at"].isoformat(), str(page[-1]["id"])], token_scope)
        return pb.ListResultsResponse(results=[result_message(r) for r in page], next_page_token=token)


def build(deps: Deps[ResultConfig]) -> list[GrpcService]:
    # The current DCC value sets (rapid-test devices) in memory, reloaded on an operator's import.
    value_sets = ValueSetStore(deps.config.database_url)
    deps.background(value_sets.run(), value_sets.stop)
    servicer = ResultServicer(deps, value_sets)
    pruner = Pruner(deps.pool, timedelta(hours=deps.config.idempotency_retention_hours))
    deps.background(pruner.run(), pruner.stop)
    if deps.config.retention_enabled:
        policy = RetentionPolicy.from_config(deps.config)
        job = RetentionJob(deps.pool, retention.STEPS, policy, deps.config.retention_interval_seconds)
        deps.background(job.run(), job.stop)
    return [
        GrpcService(
            "covidtest.result.v1.ResultService",
            lambda server: result_service_pb2_grpc.add_ResultServiceServicer_to_server(servicer, server),
            RESULT_ROLES,
        ),
    ]
