"""Sample and result intake: the rules of the system of record, one entry point per ResultService RPC.

Batches are applied per item inside one transaction per call: every item is validated first (fields,
then against the database with the affected rows locked), accepted items are written with a few
set-based statements, and the call commits once — so an acknowledged item is durable, a rejected item
changes nothing, and a failure half-way (Postgres lost) rolls the whole call back for the client to
retry with the same request id. Every result state change appends its outbox event in the same
transaction.

The steps of each RPC live in its own module: registration (RegisterSamples), recording
(RecordResults), corrections (AmendResult, WithdrawResult) and queries (GetSample, ListResults).
"""

from __future__ import annotations

import asyncpg

from services.common.auth import Principal
from services.common.pii import PiiCipher
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.result_svc import corrections, queries, recording
from services.result_svc.persons import PersonSealer
from services.result_svc.queries import ResultFilters
from services.result_svc.registration import DeviceList, Registrar
from services.result_svc.repository import ResultKey


class Intake:
    """The intake operations; each runs on a connection inside the caller's transaction."""

    def __init__(self, pii: PiiCipher, pool_max_size: int, devices: DeviceList):
        self._pii = pii
        self._registrar = Registrar(PersonSealer(pii), pool_max_size, devices)

    async def register_samples(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.RegisterSamplesRequest
    ) -> pb.RegisterSamplesResponse:
        return await self._registrar.register(conn, caller, request)

    async def record_results(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.RecordResultsRequest
    ) -> pb.RecordResultsResponse:
        return await recording.record_results(conn, caller, request)

    async def amend_result(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.AmendResultRequest
    ) -> pb.AmendResultResponse:
        return await corrections.amend_result(conn, caller, request)

    async def withdraw_result(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.WithdrawResultRequest
    ) -> pb.WithdrawResultResponse:
        return await corrections.withdraw_result(conn, caller, request)

    async def get_sample(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.GetSampleRequest
    ) -> pb.GetSampleResponse:
        return await queries.get_sample(conn, self._pii, caller, request)

    async def list_results(
        self,
        conn: asyncpg.Connection,
        caller: Principal,
        filters: ResultFilters,
        after: ResultKey | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        return await queries.list_results(conn, caller, filters, after, limit)
