"""GetSample and ListResults: what a sampling unit or a lab may read of its samples and results.

A sampling unit sees the samples it took, a lab the samples sent to it (and the results it recorded);
the caller's role picks that side (`repository.Viewer`) and every query is scoped by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.auth import Principal, Role
from services.common.errors import FieldViolation, InvalidArgument, NotFound, require
from services.common.messages import person_message, result_message
from services.common.pii import PiiCipher
from services.common.protoconv import enum_name, enum_value, timestamp, to_datetime
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2
from services.result_svc import repository as repo
from services.result_svc.validation import ambiguous_barcode, check_barcode, parse_uuid, violation

# ListResults without a state filter lists current results only (no superseded versions).
CURRENT_STATES = ["RELEASED", "RETEST_REQUIRED", "RESAMPLE_REQUIRED", "WITHDRAWN"]


def _viewer(caller: Principal) -> repo.Viewer:
    return repo.Viewer.SAMPLING_ORG if caller.role is Role.SAMPLER else repo.Viewer.LAB


# --- GetSample --------------------------------------------------------------------------------------------


async def get_sample(
    conn: asyncpg.Connection, pii: PiiCipher, caller: Principal, request: pb.GetSampleRequest
) -> pb.GetSampleResponse:
    rows = await repo.sample_with_person(conn, _sample_criteria(caller, request))
    if not rows:
        raise NotFound("no such sample", reason="SAMPLE_NOT_FOUND")
    if len(rows) > 1:
        raise ambiguous_barcode()
    row = rows[0]
    person = person_message(pii, row)
    results = await repo.results_of_sample(conn, row["id"])
    return pb.GetSampleResponse(sample=_sample_message(row, person, results))


def _sample_criteria(caller: Principal, request: pb.GetSampleRequest) -> repo.SampleCriteria:
    violations: list[FieldViolation] = []
    viewer, viewer_org_id = _viewer(caller), uuid.UUID(caller.id)
    which = request.WhichOneof("sample")
    if which == "sample_id":
        sample_id = parse_uuid(request.sample_id, "sample_id", violations)
        require(violations)
        return repo.SampleCriteria(viewer, viewer_org_id, sample_id=sample_id)
    if which == "sample_barcode":
        check_barcode(request.sample_barcode, "sample_barcode", violations)
        sampling_org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
        require(violations)
        return repo.SampleCriteria(viewer, viewer_org_id, barcode=request.sample_barcode, sampling_org_id=sampling_org)
    raise InvalidArgument(
        "sample_id or sample_barcode is required",
        [violation("sample_id", "FIELD_REQUIRED", "sample_id or sample_barcode")],
    )


def _sample_message(row: Any, person: person_pb2.Person, results: Iterable[Any]) -> pb.Sample:
    return pb.Sample(
        sample_id=str(row["id"]),
        sample_barcode=row["barcode"],
        sampling_org_id=str(row["org_id"]),
        lab_org_id=str(row["lab_org_id"]),
        state=enum_value(testing_pb2.SampleState, row["state"]),
        person=person,
        test_type=enum_value(testing_pb2.TestType, row["test_type"]),
        rat_device_id=row["rat_device_id"] or "",
        collected_at=timestamp(row["collected_at"]),
        sampling_site=row["sampling_site"],
        pool_barcode=row["pool_barcode"],
        retest_of_sample_id=str(row["retest_of"]) if row["retest_of"] else "",
        retest_of_sample_barcode=row["retest_of_barcode"],
        retest_sample_ids=[str(i) for i in row["retest_sample_ids"]],
        registered_at=timestamp(row["registered_at"]),
        results=[result_message(r) for r in results],
    )


# --- ListResults ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultFilters:
    """ListResults' filters: recorded in [start, end), outcomes (empty: any), states."""

    start: datetime | None
    end: datetime | None
    outcomes: list[str]
    states: list[str]

    def token_scope(self, role: Role) -> dict[str, object]:
        """What a page token is bound to: these filters and the caller's role."""
        return {
            "start": self.start,
            "end": self.end,
            "outcomes": self.outcomes,
            "states": self.states,
            "role": role.value,
        }


def _enum_filter(values: Iterable[int], enum_type: Any, field: str) -> list[str]:
    names: list[str] = []
    for i, value in enumerate(values):
        name = enum_name(enum_type, value)
        if not name or name in names:
            raise InvalidArgument(
                f"invalid {field}",
                [FieldViolation(f"{field}[{i}]", "a known value, no repeats", "FIELD_FORMAT_INVALID")],
            )
        names.append(name)
    return names


def result_filters(request: pb.ListResultsRequest) -> ResultFilters:
    start = to_datetime(request.start_time, "start_time") if request.HasField("start_time") else None
    end = to_datetime(request.end_time, "end_time") if request.HasField("end_time") else None
    if start and end and end <= start:
        raise InvalidArgument(
            "end_time must be after start_time",
            [FieldViolation("end_time", "after start_time", "FIELD_OUT_OF_RANGE")],
        )
    return ResultFilters(
        start=start,
        end=end,
        outcomes=_enum_filter(request.outcomes, testing_pb2.Outcome, "outcomes"),
        states=_enum_filter(request.states, testing_pb2.ResultState, "states") or CURRENT_STATES,
    )


async def list_results(
    conn: asyncpg.Connection,
    caller: Principal,
    filters: ResultFilters,
    after: repo.ResultKey | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` result versions the caller may see, after `after` in (recorded_at, id) order."""
    criteria = repo.ResultCriteria(
        viewer=_viewer(caller),
        viewer_org_id=uuid.UUID(caller.id),
        recorded_from=filters.start,
        recorded_before=filters.end,
        outcomes=filters.outcomes,
        states=filters.states,
        after=after,
        limit=limit,
    )
    return await repo.list_results(conn, criteria)
