"""RecordResults: a lab records the results of a batch of samples and pools sent to it.

One call runs in steps: check every item's fields (and samples or pools repeated within the request);
look up, locked, the lab's samples and pools with those barcodes, the pools' members and their current
results; judge each item against that; write the new results, sample and pool states and outbox
events with a few set-based statements; answer item by item. A result already recorded exactly as
submitted is a replay (ALREADY_RECORDED); a different one must go through AmendResult.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from services.common import audit
from services.common.auth import Principal
from services.common.errors import FieldViolation
from services.common.fields import utcnow
from services.common.protoconv import enum_value
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc import repository as repo
from services.result_svc.lifecycle import (
    EVENT_KIND_OF_RESULT,
    INDIVIDUAL_STATE,
    POOL_MEMBER_STATE,
    SAMPLE_STATE_OF_RESULT,
    result_event,
    same_result,
)
from services.result_svc.validation import Submission, check_batch, check_submission, rpc_violations, violation


class _Recorded(NamedTuple):
    sample: Any  # the sample's row
    result: repo.NewResult


@dataclass(slots=True)
class _Known:
    """What the database holds for the call's valid items; samples and pools are locked."""

    samples_by_barcode: dict[str, list[Any]]  # the lab's samples with the items' sample barcodes
    pools_by_barcode: dict[str, list[Any]]  # the lab's pools with the items' pool barcodes
    members_of: dict[uuid.UUID, list[Any]]  # pool id → its member samples
    current: dict[uuid.UUID, Any]  # sample id → its current result
    elsewhere: set[str]  # sample barcodes not found here but sent to another lab


@dataclass(slots=True)
class _Call:
    """The state of one RecordResults call, item by item (keys are item indexes)."""

    lab_id: uuid.UUID
    answers: list[pb.ResultSubmissionResult]
    valid: dict[int, Submission] = field(default_factory=dict)
    problems: dict[int, list[FieldViolation]] = field(default_factory=dict)
    recorded: dict[int, list[_Recorded]] = field(default_factory=dict)
    new_results: list[repo.NewResult] = field(default_factory=list)
    pool_results: list[repo.PoolResult] = field(default_factory=list)
    targets: set[uuid.UUID] = field(default_factory=set)  # ids of the samples and pools items resolved to


async def record_results(
    conn: asyncpg.Connection, caller: Principal, request: pb.RecordResultsRequest
) -> pb.RecordResultsResponse:
    """Runs RecordResults inside the caller's transaction."""
    check_batch(request.results, "results")
    call = _check_fields(request.results, uuid.UUID(caller.id), utcnow())
    known = await _look_up(conn, call)
    for i, sub in call.valid.items():
        _judge(call, known, i, sub)
    await _apply(conn, call)
    await audit.record_many(
        conn, caller, "RECORD_RESULT", "result", [str(r.id) for r in call.new_results], request.request_id
    )
    return _answer(call)


# --- check: fields, and samples or pools repeated in the request ----------------------------------------


def _check_fields(results: Sequence[pb.ResultSubmission], lab_id: uuid.UUID, now: datetime) -> _Call:
    call = _Call(lab_id, [pb.ResultSubmissionResult(index=i) for i in range(len(results))])
    seen: set[tuple[tuple[str, str], uuid.UUID | None]] = set()
    for i, item in enumerate(results):
        sub, violations = check_submission(item, f"results[{i}]", now)
        if sub is not None and (sub.target, sub.sampling_org_id) in seen:
            violations = [_duplicate(f"results[{i}].{sub.target[0]}_barcode")]
        if sub is None or violations:
            call.problems[i] = violations
        else:
            seen.add((sub.target, sub.sampling_org_id))
            call.valid[i] = sub
    return call


def _duplicate(field: str) -> FieldViolation:
    return violation(field, "DUPLICATE_IN_REQUEST", "this sample or pool appears earlier in this request")


# --- look up: the lab's samples and pools, the pools' members, current results -------------------------


def _grouped(rows: list[Any], column: str) -> dict[Any, list[Any]]:
    """Rows by the value of `column`, each group in the rows' order."""
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        groups.setdefault(row[column], []).append(row)
    return groups


async def _look_up(conn: asyncpg.Connection, call: _Call) -> _Known:
    # Grouped by barcode once, so that judging a batch of hundreds looks at each item's rows only.
    # In the lock order of the repository: the pools first, then in one statement every sample the call
    # may change, the items' samples and the pools' members together (a member may be both).
    sample_barcodes = [s.sample_barcode for s in call.valid.values() if s.sample_barcode]
    pool_barcodes = [s.pool_barcode for s in call.valid.values() if s.pool_barcode]
    pools = await repo.lab_pools_by_barcode(conn, call.lab_id, pool_barcodes)
    pool_ids = {p["id"] for p in pools}
    locked = await repo.lock_lab_samples(conn, call.lab_id, sample_barcodes, list(pool_ids))
    wanted = set(sample_barcodes)
    samples = [s for s in locked if s["lab_org_id"] == call.lab_id and s["barcode"] in wanted]
    members = [s for s in locked if s["pool_id"] in pool_ids]
    current = await repo.current_results(conn, [s["id"] for s in locked])
    found = {s["barcode"] for s in samples}
    elsewhere = await repo.sample_barcodes_at_other_labs(
        conn, call.lab_id, [b for b in sample_barcodes if b not in found]
    )
    return _Known(
        samples_by_barcode=_grouped(samples, "barcode"),
        pools_by_barcode=_grouped(pools, "barcode"),
        members_of=_grouped(members, "pool_id"),
        current=current,
        elsewhere=elsewhere,
    )


# --- judge: each valid item against what the database holds --------------------------------------------


def _judge(call: _Call, known: _Known, i: int, sub: Submission) -> None:
    path = f"results[{i}]"
    kind, barcode = sub.target
    by_barcode = known.samples_by_barcode if kind == "sample" else known.pools_by_barcode
    candidates = [
        r for r in by_barcode.get(barcode, ()) if sub.sampling_org_id is None or r["org_id"] == sub.sampling_org_id
    ]
    problem = _target_problem(kind, barcode, candidates, known.elsewhere, path)
    if problem is not None:
        call.problems[i] = [problem]
        return
    target = candidates[0]
    # The same sample or pool named twice, e.g. once with sampling_org_id and once without: the
    # spellings differ, so only the resolved target shows it (two results for one sample would collide).
    if target["id"] in call.targets:
        call.problems[i] = [_duplicate(f"{path}.{kind}_barcode")]
        return
    call.targets.add(target["id"])
    targets = [target] if kind == "sample" else known.members_of.get(target["id"], [])
    violations = _check_recordable(sub, kind, target, targets, known.current, path)
    if violations is None:  # exactly this result is already recorded: a replay
        call.answers[i].status = pb.RECORDING_STATUS_ALREADY_RECORDED
        call.answers[i].samples.extend(recorded_sample(m, known.current[m["id"]]) for m in targets)
    elif violations:
        call.problems[i] = violations
    else:
        _accept(call, i, sub, target, targets)


def _target_problem(
    kind: str, barcode: str, candidates: list[Any], elsewhere: set[str], path: str
) -> FieldViolation | None:
    """Why the item names no single sample or pool of this lab, if it does not."""
    field = f"{path}.{kind}_barcode"
    if not candidates:
        if kind == "sample" and barcode in elsewhere:
            return violation(
                field,
                "SAMPLE_ASSIGNED_TO_OTHER_LAB",
                "the sample was sent to another lab; only that lab records its result",
            )
        if kind == "sample":
            return violation(field, "SAMPLE_NOT_FOUND", "no sample with this barcode was sent to you")
        return violation(field, "POOL_NOT_FOUND", "no pool with this barcode was sent to you")
    if len(candidates) > 1:
        return violation(
            f"{path}.sampling_org_id",
            "SAMPLE_BARCODE_AMBIGUOUS",
            "several sampling units used this barcode; give sampling_org_id",
        )
    return None


def _check_recordable(
    sub: Submission, kind: str, target: Any, targets: list[Any], current: dict[uuid.UUID, Any], path: str
) -> list[FieldViolation] | None:
    """Violations of recording `sub`; [] if it may be recorded; None if it is already recorded as is."""
    field = f"{path}.{kind}_barcode"
    if kind == "sample" and target["pool_id"] is not None:
        return [violation(field, "SAMPLE_IS_POOLED", "the sample is pooled: record the pool's result")]
    if target["state"] != "REGISTERED":
        if _recorded_as_is(sub, kind, target, targets, current):
            return None
        return [violation(field, "SAMPLE_ALREADY_RESULTED", "a different result is recorded: use AmendResult")]
    violations = []
    if any(sub.tested_at < m["collected_at"] for m in targets):
        violations.append(
            violation(f"{path}.tested_at", "TESTED_BEFORE_COLLECTED", "tested_at is before the sample was collected")
        )
    if sub.ct_value is not None and any(m["test_type"] != "NAAT" for m in targets):
        violations.append(violation(f"{path}.ct_value", "FIELD_NOT_ALLOWED", "only for NAAT"))
    return violations


def _recorded_as_is(sub: Submission, kind: str, target: Any, targets: list[Any], current: dict[uuid.UUID, Any]) -> bool:
    """Whether the resulted sample or pool holds exactly `sub` (a replay of an earlier call)."""
    if kind == "pool":
        return target["outcome"] is not None and same_result(sub, target) and all(m["id"] in current for m in targets)
    previous = current.get(target["id"])
    return (
        previous is not None
        and previous["version"] == 1
        and previous["state"] not in ("WITHDRAWN",)
        and same_result(sub, previous)
    )


def _accept(call: _Call, i: int, sub: Submission, target: Any, targets: list[Any]) -> None:
    """A first result for each target sample (a pool's result goes to every member, and to the pool)."""
    kind = sub.target[0]
    state = (INDIVIDUAL_STATE if kind == "sample" else POOL_MEMBER_STATE)[sub.outcome]
    recorded = call.recorded[i] = []
    for member in targets:
        result = repo.NewResult(
            id=uuid.uuid4(),
            sample_id=member["id"],
            version=1,
            outcome=sub.outcome,
            state=state,
            lab_org_id=call.lab_id,
            pool_id=member["pool_id"],
            tested_at=sub.tested_at,
            method=sub.method,
            ct_value=sub.ct_value,
            lab_reference=sub.lab_reference,
        )
        call.new_results.append(result)
        recorded.append(_Recorded(member, result))
    if kind == "pool":
        call.pool_results.append(
            repo.PoolResult(
                pool_id=target["id"],
                state=SAMPLE_STATE_OF_RESULT[state],
                outcome=sub.outcome,
                tested_at=sub.tested_at,
                method=sub.method,
                ct_value=sub.ct_value,
                lab_reference=sub.lab_reference,
            )
        )


# --- apply: results, sample and pool states, outbox events ----------------------------------------------


async def _apply(conn: asyncpg.Connection, call: _Call) -> None:
    new_results = call.new_results
    await repo.insert_results(conn, new_results)
    await repo.set_sample_states(
        conn, [repo.SampleStateChange(r.sample_id, SAMPLE_STATE_OF_RESULT[r.state]) for r in new_results]
    )
    await repo.set_pool_results(conn, call.pool_results)
    await repo.append_outbox(
        conn,
        [
            result_event(
                EVENT_KIND_OF_RESULT[r.state],
                r.id,
                r.sample_id,
                r.version,
                outcome=r.outcome,
                state=r.state,
                pool_id=str(r.pool_id) if r.pool_id else None,
            )
            for r in new_results
        ],
    )


# --- answer ------------------------------------------------------------------------------------------------


def _answer(call: _Call) -> pb.RecordResultsResponse:
    answers = call.answers
    for i, recorded in call.recorded.items():
        answers[i].status = pb.RECORDING_STATUS_RECORDED
        answers[i].samples.extend(
            pb.RecordedSample(
                sample_id=str(m["id"]),
                sample_barcode=m["barcode"],
                sample_state=enum_value(testing_pb2.SampleState, SAMPLE_STATE_OF_RESULT[r.state]),
                result_id=str(r.id),
                result_version=r.version,
                result_state=enum_value(testing_pb2.ResultState, r.state),
            )
            for m, r in recorded
        )
    for i, violations in call.problems.items():
        answers[i].status = pb.RECORDING_STATUS_REJECTED
        answers[i].violations.extend(rpc_violations(violations))
    return pb.RecordResultsResponse(
        results=answers,
        recorded_count=len(call.recorded),
        already_recorded_count=sum(r.status == pb.RECORDING_STATUS_ALREADY_RECORDED for r in answers),
        rejected_count=len(call.problems),
    )


def recorded_sample(sample: Any, result: Any) -> pb.RecordedSample:
    """A sample and its current result as stored (rows of `samples` and `results`)."""
    return pb.RecordedSample(
        sample_id=str(sample["id"]),
        sample_barcode=sample["barcode"],
        sample_state=enum_value(testing_pb2.SampleState, sample["state"]),
        result_id=str(result["id"]),
        result_version=result["version"],
        result_state=enum_value(testing_pb2.ResultState, result["state"]),
    )
