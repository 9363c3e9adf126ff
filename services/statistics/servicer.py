"""StatisticsService: the province's figures over gRPC, for its health department (and operators).

Thin: it resolves the province from the caller (figures.province), checks the period, reads one page
in one transaction and converts the suppressed rows (figures) to messages. `statistics_service(deps)`
also starts the summary's refresher (summary.Refresher) in the hosting process (result_svc).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration

from services.common.auth import Role, current_caller
from services.common.config import ServiceConfig
from services.common.db import in_tx
from services.common.paging import decode_token, encode_token, page_size
from services.common.protoconv import enum_value, timestamp
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.statistics.v1 import statistics_service_pb2 as pb
from services.gen.covidtest.statistics.v1 import statistics_service_pb2_grpc
from services.gen.covidtest.type.v1 import verdict_pb2
from services.statistics import figures, repository, summary

SERVICE = "covidtest.statistics.v1.StatisticsService"
ROLES = [Role.HEALTH_AUTHORITY, Role.OPERATOR]
STATISTICS_ROLES = {
    "ListTestCounts": ROLES,
    "ListTurnaround": ROLES,
    "GetLabBacklog": ROLES,
    "ListVerdictCounts": ROLES,
}


def _count(c: figures.Count) -> pb.SuppressibleCount:
    return pb.SuppressibleCount(value=c.value, suppressed=c.suppressed)


def _rate(r: figures.Rate) -> pb.SuppressibleRate:
    return pb.SuppressibleRate(value=r.value, suppressed=r.suppressed)


def _duration(d: figures.Duration) -> pb.SuppressibleDuration:
    out = pb.SuppressibleDuration(suppressed=d.suppressed)
    if d.seconds is not None:
        out.value.CopyFrom(Duration(seconds=d.seconds))
    return out


def _verdict(name: str) -> verdict_pb2.Verdict:
    try:
        return enum_value(verdict_pb2.Verdict, name)
    except ValueError:
        return verdict_pb2.VERDICT_UNSPECIFIED


class StatisticsServicer(statistics_service_pb2_grpc.StatisticsServiceServicer):
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def _daily_page(
        self, kind: str, request: pb.ListTestCountsRequest | pb.ListTurnaroundRequest
    ) -> tuple[list[repository.DailyRow], str, datetime | None]:
        province = figures.province(current_caller(), request.province_code)
        period = figures.period(request.range.from_date, request.range.to_date)
        limit = page_size(request.page_size)
        scope = [kind, province, period.first.isoformat(), period.last.isoformat()]
        key = decode_token(request.page_token, scope, (date.fromisoformat, str, uuid.UUID))
        after = repository.DayKey(*key) if key else None

        async def read(conn: asyncpg.Connection) -> tuple[list[repository.DailyRow], datetime | None]:
            rows = await repository.daily(conn, province, period.first, period.last, after, limit + 1)
            return rows, await repository.covered_until(conn)

        rows, as_of = await in_tx(self._pool, read)
        token = ""
        if len(rows) > limit:
            last = rows[limit - 1]
            token = encode_token([last.day.isoformat(), last.district_code, str(last.lab_org_id)], scope)
        return rows[:limit], token, as_of

    async def ListTestCounts(
        self, request: pb.ListTestCountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTestCountsResponse:
        rows, token, as_of = await self._daily_page("tests", request)
        out = pb.ListTestCountsResponse(next_page_token=token, as_of=timestamp(as_of))
        for r in map(figures.TestRow.of, rows):
            out.rows.append(
                pb.TestCountRow(
                    date=r.date.isoformat(),
                    district_code=r.district_code,
                    lab_organisation_id=str(r.lab_org_id),
                    tests=_count(r.tests),
                    positives=_count(r.positives),
                    positivity=_rate(r.positivity),
                    pools_tested=_count(r.pools_tested),
                    pools_positive=_count(r.pools_positive),
                    pool_positivity=_rate(r.pool_positivity),
                )
            )
        return out

    async def ListTurnaround(
        self, request: pb.ListTurnaroundRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTurnaroundResponse:
        rows, token, as_of = await self._daily_page("turnaround", request)
        out = pb.ListTurnaroundResponse(next_page_token=token, as_of=timestamp(as_of))
        for r in map(figures.TurnaroundRow.of, rows):
            out.rows.append(
                pb.TurnaroundRow(
                    date=r.date.isoformat(),
                    district_code=r.district_code,
                    lab_organisation_id=str(r.lab_org_id),
                    count=_count(r.count),
                    p50=_duration(r.p50),
                    p90=_duration(r.p90),
                )
            )
        return out

    async def GetLabBacklog(
        self, request: pb.GetLabBacklogRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLabBacklogResponse:
        province = figures.province(current_caller(), request.province_code)
        now, rows = await in_tx(self._pool, lambda conn: repository.backlog(conn, province))
        out = pb.GetLabBacklogResponse(as_of=timestamp(now))
        for r in map(figures.BacklogRow.of, rows):
            out.labs.append(
                pb.LabBacklogRow(
                    lab_organisation_id=str(r.lab_org_id),
                    under_24_hours=_count(r.under_24h),
                    from_24_to_48_hours=_count(r.from_24_to_48h),
                    over_48_hours=_count(r.over_48h),
                )
            )
        return out

    async def ListVerdictCounts(
        self, request: pb.ListVerdictCountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVerdictCountsResponse:
        province = figures.province(current_caller(), request.province_code)
        period = figures.period(request.range.from_date, request.range.to_date)
        limit = page_size(request.page_size)
        scope = ["verdicts", province, period.first.isoformat(), period.last.isoformat()]
        key = decode_token(request.page_token, scope, (uuid.UUID, datetime.fromisoformat, str))
        after = repository.VerdictKey(*key) if key else None
        start, end = period.hours()
        rows = await in_tx(self._pool, lambda conn: repository.verdicts(conn, province, start, end, after, limit + 1))
        token = ""
        if len(rows) > limit:
            last = rows[limit - 1]
            token = encode_token([str(last.checkpoint_id), last.hour.isoformat(), last.verdict], scope)
        out = pb.ListVerdictCountsResponse(next_page_token=token)
        for r in map(figures.VerdictRow.of, rows[:limit]):
            out.rows.append(
                pb.VerdictCountRow(
                    hour=timestamp(r.hour),
                    checkpoint_device_id=str(r.checkpoint_id),
                    verdict=_verdict(r.verdict),
                    count=_count(r.count),
                )
            )
        return out


def statistics_service(deps: Deps[ServiceConfig], refresh_seconds: float = summary.REFRESH_SECONDS) -> GrpcService:
    """StatisticsService for a process that hosts it, with the summary's refresher as a background task."""
    refresher = summary.Refresher(deps.pool, refresh_seconds)
    deps.background(refresher.run(), refresher.stop)
    servicer = StatisticsServicer(deps.pool)
    return GrpcService(
        SERVICE,
        lambda server: statistics_service_pb2_grpc.add_StatisticsServiceServicer_to_server(servicer, server),
        STATISTICS_ROLES,
    )
