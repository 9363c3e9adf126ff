"""AmendResult and WithdrawResult: a lab corrects, or takes back, the current result of one of its samples.

An amendment supersedes the current result with a new version; a withdrawal marks it WITHDRAWN. Both
find the sample among those sent to the calling lab (locked), change it, append the outbox event and
the audit row in the caller's transaction, and answer with the result as now stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from services.common import audit
from services.common.auth import Principal
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied
from services.common.fields import check_text, utcnow
from services.common.messages import result_message
from services.common.protoconv import enum_value
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc import repository as repo
from services.result_svc.lifecycle import INDIVIDUAL_STATE, SAMPLE_STATE_OF_RESULT, result_event, same_result
from services.result_svc.validation import (
    Submission,
    ambiguous_barcode,
    check_barcode,
    check_result_fields,
    parse_uuid,
    violation,
)


class _Resulted(NamedTuple):
    sample: Any  # the sample's row, locked
    current: Any  # its current result's row


async def _resolve_for_change(
    conn: asyncpg.Connection, lab_id: uuid.UUID, barcode: str, org: uuid.UUID | None
) -> _Resulted:
    """The lab's sample with this barcode (of sampling unit `org` if given) and its current result."""
    rows = [r for r in await repo.lock_lab_samples(conn, lab_id, [barcode]) if org is None or r["org_id"] == org]
    if not rows:
        if await repo.sample_barcodes_at_other_labs(conn, lab_id, [barcode]):
            raise PermissionDenied("the sample was sent to another lab", reason="SAMPLE_ASSIGNED_TO_OTHER_LAB")
        raise NotFound("no sample with this barcode was sent to you", reason="SAMPLE_NOT_FOUND")
    if len(rows) > 1:
        raise ambiguous_barcode()
    sample = rows[0]
    if sample["state"] == "WITHDRAWN":
        raise FailedPrecondition("the sample's result was withdrawn", reason="SAMPLE_WITHDRAWN")
    previous = (await repo.current_results(conn, [sample["id"]])).get(sample["id"])
    if previous is None:
        raise FailedPrecondition("the sample has no result yet: use RecordResults", reason="SAMPLE_NOT_RESULTED")
    return _Resulted(sample, previous)


# --- AmendResult ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Amendment:
    result: Submission  # the corrected result, for request.sample_barcode
    reason: str


async def amend_result(
    conn: asyncpg.Connection, caller: Principal, request: pb.AmendResultRequest
) -> pb.AmendResultResponse:
    """Runs AmendResult inside the caller's transaction."""
    amendment = _check_amendment(request, utcnow())
    lab_id = uuid.UUID(caller.id)
    sample, previous = await _resolve_for_change(conn, lab_id, request.sample_barcode, amendment.result.sampling_org_id)
    _check_against_current(amendment.result, sample, previous)
    new = await _apply_amendment(conn, lab_id, amendment, sample, previous)
    await audit.record(
        conn,
        caller,
        "AMEND_RESULT",
        "result",
        str(new.id),
        request.request_id,
        {"superseded_result_id": str(previous["id"])},
    )
    result = (await repo.results_of_sample(conn, sample["id"]))[0]
    return pb.AmendResultResponse(
        result=result_message(result),
        superseded_result_id=str(previous["id"]),
        sample_state=enum_value(testing_pb2.SampleState, SAMPLE_STATE_OF_RESULT[new.state]),
    )


def _check_amendment(request: pb.AmendResultRequest, now: datetime) -> _Amendment:
    violations: list[FieldViolation] = []
    check_barcode(request.sample_barcode, "sample_barcode", violations)
    org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
    ct = request.ct_value if request.HasField("ct_value") else None
    outcome, tested_at = check_result_fields(
        request.outcome, request.tested_at, request.method, ct, request.lab_reference, "", violations, now
    )
    reason = " ".join(request.reason.split())
    # Free text, so tab and line breaks may come (they fold into spaces); any other control
    # character, NUL above all (Postgres refuses it), is refused before the length rules.
    plain = check_text(request.reason, "reason", None, violations, multiline=True) is not None
    if plain and (not reason or len(reason) > 500):
        violations.append(
            violation(
                "reason",
                "FIELD_REQUIRED" if not reason else "FIELD_FORMAT_INVALID",
                "1-500 characters, no personal data",
            )
        )
    # check_result_fields names fields under an item path; an amendment has none ("" + ".outcome").
    violations = [FieldViolation(v.field.lstrip("."), v.description, v.reason) for v in violations]
    if violations:
        raise InvalidArgument("invalid amendment", violations)
    assert tested_at is not None  # a missing or invalid tested_at added its violation
    submission = Submission(
        sample_barcode=request.sample_barcode,
        pool_barcode=None,
        sampling_org_id=org,
        outcome=outcome,
        tested_at=tested_at,
        method=request.method,
        ct_value=ct,
        lab_reference=request.lab_reference,
    )
    return _Amendment(submission, reason)


def _check_against_current(submission: Submission, sample: Any, previous: Any) -> None:
    """The amendment must fit the sample and change the current result."""
    if submission.tested_at < sample["collected_at"]:
        raise InvalidArgument(
            "tested_at is before the sample was collected",
            [violation("tested_at", "TESTED_BEFORE_COLLECTED", "after collected_at")],
        )
    if submission.ct_value is not None and sample["test_type"] != "NAAT":
        raise InvalidArgument(
            "ct_value is only for NAAT", [violation("ct_value", "FIELD_NOT_ALLOWED", "only for NAAT")]
        )
    if same_result(submission, previous) and previous["state"] == INDIVIDUAL_STATE[submission.outcome]:
        raise FailedPrecondition("the amendment changes nothing", reason="AMENDMENT_NO_CHANGE")


async def _apply_amendment(
    conn: asyncpg.Connection, lab_id: uuid.UUID, amendment: _Amendment, sample: Any, previous: Any
) -> repo.NewResult:
    """Supersedes the current result with the next version; returns that version."""
    await repo.supersede(conn, previous["id"])
    sub = amendment.result
    new = repo.NewResult(
        id=uuid.uuid4(),
        sample_id=sample["id"],
        version=previous["version"] + 1,
        outcome=sub.outcome,
        state=INDIVIDUAL_STATE[sub.outcome],
        lab_org_id=lab_id,
        pool_id=None,
        tested_at=sub.tested_at,
        method=sub.method,
        ct_value=sub.ct_value,
        lab_reference=sub.lab_reference,
        amendment_reason=amendment.reason,
    )
    await repo.insert_results(conn, [new])
    await repo.set_sample_states(conn, [repo.SampleStateChange(sample["id"], SAMPLE_STATE_OF_RESULT[new.state])])
    event = result_event(
        "AMENDED",
        new.id,
        sample["id"],
        new.version,
        outcome=new.outcome,
        state=new.state,
        previous_result_id=str(previous["id"]),
    )
    await repo.append_outbox(conn, [event])
    return new


# --- WithdrawResult ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Withdrawal:
    sampling_org_id: uuid.UUID | None
    reason: str  # a WithdrawalReason name without its prefix
    text: str


async def withdraw_result(
    conn: asyncpg.Connection, caller: Principal, request: pb.WithdrawResultRequest
) -> pb.WithdrawResultResponse:
    """Runs WithdrawResult inside the caller's transaction."""
    withdrawal = _check_withdrawal(request)
    sample, previous = await _resolve_for_change(
        conn, uuid.UUID(caller.id), request.sample_barcode, withdrawal.sampling_org_id
    )
    await repo.withdraw(conn, previous["id"], withdrawal.reason, withdrawal.text)
    await repo.set_sample_states(conn, [repo.SampleStateChange(sample["id"], "WITHDRAWN")])
    event = result_event(
        "WITHDRAWN",
        previous["id"],
        sample["id"],
        previous["version"],
        state="WITHDRAWN",
        withdrawal_reason=withdrawal.reason,
    )
    await repo.append_outbox(conn, [event])
    await audit.record(
        conn,
        caller,
        "WITHDRAW_RESULT",
        "result",
        str(previous["id"]),
        request.request_id,
        {"withdrawal_reason": withdrawal.reason},
    )
    result = (await repo.results_of_sample(conn, sample["id"]))[0]
    return pb.WithdrawResultResponse(result=result_message(result), sample_state=testing_pb2.SAMPLE_STATE_WITHDRAWN)


def _check_withdrawal(request: pb.WithdrawResultRequest) -> _Withdrawal:
    violations: list[FieldViolation] = []
    check_barcode(request.sample_barcode, "sample_barcode", violations)
    org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
    reason = (
        testing_pb2.WithdrawalReason.Name(request.reason).removeprefix("WITHDRAWAL_REASON_")
        if request.reason in testing_pb2.WithdrawalReason.values()
        else "UNSPECIFIED"
    )
    text = " ".join(request.reason_text.split())
    if reason == "UNSPECIFIED":
        violations.append(violation("reason", "FIELD_REQUIRED", "SAMPLE_MIX_UP, LAB_ERROR or OTHER"))
    # As AmendResult's reason: tab and line breaks fold into spaces, other control characters are refused.
    plain = check_text(request.reason_text, "reason_text", None, violations, multiline=True) is not None
    if plain and (len(text) > 500 or (reason == "OTHER" and not text)):
        violations.append(
            violation(
                "reason_text",
                "FIELD_REQUIRED" if not text else "FIELD_FORMAT_INVALID",
                "0-500 characters; 1-500 when reason is OTHER",
            )
        )
    if violations:
        raise InvalidArgument("invalid withdrawal", violations)
    return _Withdrawal(org, reason, text)
