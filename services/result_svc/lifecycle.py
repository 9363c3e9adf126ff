"""What a result outcome does to its sample, and the outbox event each result change appends.

An individual sample's NEGATIVE or POSITIVE result is released; a pool member's POSITIVE is not (the
sample must be retested alone); INCONCLUSIVE and INVALID_SAMPLE need a new sample. The outbox event
is how the publish relay learns of the change, so every change builds it with `result_event`.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.common import tracing
from services.result_svc.repository import OutboxEvent
from services.result_svc.validation import Submission

# Result state after an outcome, for an individual sample and for a pool member.
INDIVIDUAL_STATE = {
    "NEGATIVE": "RELEASED",
    "POSITIVE": "RELEASED",
    "INCONCLUSIVE": "RESAMPLE_REQUIRED",
    "INVALID_SAMPLE": "RESAMPLE_REQUIRED",
}
POOL_MEMBER_STATE = {
    "NEGATIVE": "RELEASED",
    "POSITIVE": "RETEST_REQUIRED",
    "INCONCLUSIVE": "RESAMPLE_REQUIRED",
    "INVALID_SAMPLE": "RESAMPLE_REQUIRED",
}
SAMPLE_STATE_OF_RESULT = {
    "RELEASED": "RESULTED",
    "RETEST_REQUIRED": "RETEST_REQUIRED",
    "RESAMPLE_REQUIRED": "RESAMPLE_REQUIRED",
}
EVENT_KIND_OF_RESULT = {
    "RELEASED": "RELEASED",
    "RETEST_REQUIRED": "POOL_POSITIVE_RETEST_REQUIRED",
    "RESAMPLE_REQUIRED": "RESAMPLE_REQUIRED",
}
# Sample states from which a new sample of the same person may be registered as its retest.
RETESTABLE = ("RETEST_REQUIRED", "RESAMPLE_REQUIRED", "WITHDRAWN")


def registration_event(sample_id: uuid.UUID) -> OutboxEvent:
    """The outbox event of a newly registered sample: "result pending" in the feed, no result yet."""
    return OutboxEvent("SAMPLE_REGISTERED", None, sample_id, {"sample_id": str(sample_id), **_trace()})


def result_event(
    kind: str, result_id: uuid.UUID, sample_id: uuid.UUID, version: int, **codes: str | None
) -> OutboxEvent:
    """The outbox event of one result change. `codes` (outcome, state, previous_result_id, ...) follow the
    ids in the payload; like the ids they are codes, never personal data."""
    payload = {"result_id": str(result_id), "sample_id": str(sample_id), "version": version, **codes, **_trace()}
    return OutboxEvent(kind, result_id, sample_id, payload)


def _trace() -> dict[str, str]:
    """The intake call's trace, for the relay and the feed to continue (services.common.tracing)."""
    traceparent = tracing.current_traceparent()
    return {tracing.TRACEPARENT: traceparent} if traceparent else {}


def same_result(submission: Submission, row: Any) -> bool:
    """Whether a stored result (a `results` or `pools` row) is exactly the one submitted."""
    return submission.same_result(
        row["outcome"], row["tested_at"], row["method"], row["ct_value"], row["lab_reference"]
    )
