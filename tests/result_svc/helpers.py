"""Builders for intake requests used by the result_svc tests and the intake benchmark."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def ago(**kw) -> Timestamp:
    return ts(datetime.now(UTC) - timedelta(**kw))


def rid() -> str:
    return str(uuid.uuid4())


def person(n: int = 0, **overrides) -> person_pb2.Person:
    fields = dict(
        identity=person_pb2.PersonIdentity(
            type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID, number=f"{24_000_000_000 + n:012d}"
        ),
        full_name="Nguyễn Văn An",
        date_of_birth="1985-03-14",
        phone=f"09{n % 100_000_000:08d}",
        province_code="24",
        district_code="213",
    )
    fields.update(overrides)
    return person_pb2.Person(**fields)


def sample(barcode: str, lab_id: str, n: int = 0, **overrides) -> pb.SampleRegistration:
    fields = dict(
        sample_barcode=barcode,
        person=person(n),
        test_type=testing_pb2.TEST_TYPE_NAAT,
        collected_at=ago(hours=3),
        sampling_site="Trạm Y tế xã Tân Mỹ",
        lab_org_id=lab_id,
    )
    fields.update(overrides)
    return pb.SampleRegistration(**fields)


def result(
    outcome: int = testing_pb2.OUTCOME_NEGATIVE, *, sample_barcode: str = "", pool_barcode: str = "", **overrides
) -> pb.ResultSubmission:
    fields = dict(outcome=outcome, tested_at=ago(hours=1), method="RT-PCR cobas", lab_reference="LIS-1")
    fields.update(overrides)
    if pool_barcode:
        fields["pool_barcode"] = pool_barcode
    else:
        fields["sample_barcode"] = sample_barcode
    return pb.ResultSubmission(**fields)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
