"""Database rows → the shared protobuf messages (covidtest.type.v1 Person and Result).

Used by result_svc (GetSample, ListResults) and publish_svc (feed events, citizen lookups), so a
result looks the same wherever it is read. A row carries the columns of `results` plus the sample's
(`sample_barcode`, `sampling_org_id`, `test_type`, `rat_device_id`, `collected_at`, `sampling_site`,
`pool_barcode`) and, for a person, the sealed `persons` columns.
"""

from __future__ import annotations

from services.common.pii import PiiCipher
from services.common.protoconv import enum_value, timestamp
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2


def person_message(pii: PiiCipher, row) -> person_pb2.Person:
    """The person of a row; for a person erased under the retention policy (every sealed column NULL, as
    the table's check requires), only the area codes and the flag saying so."""
    if row["full_name_enc"] is None:
        return person_pb2.Person(
            province_code=row["person_province_code"],
            district_code=row["person_district_code"],
            personal_data_erased=True,
        )
    open_ = pii.open
    person = person_pb2.Person(
        full_name=open_("person.full_name", row["full_name_enc"]),
        date_of_birth=open_("person.date_of_birth", row["date_of_birth_enc"]),
        phone=open_("person.phone", row["phone_enc"]) if row["phone_enc"] else "",
        province_code=row["person_province_code"],
        district_code=row["person_district_code"],
        family_name=open_("person.family_name", row["family_name_enc"]) if row["family_name_enc"] else "",
        given_name=open_("person.given_name", row["given_name_enc"]) if row["given_name_enc"] else "",
    )
    if row["identity_enc"]:
        doc_type, country, number = open_("person.identity", row["identity_enc"]).split("|", 2)
        person.identity.CopyFrom(
            person_pb2.PersonIdentity(
                type=enum_value(person_pb2.IdentityDocumentType, doc_type), number=number, country=country
            )
        )
    return person


def result_message(row, *, id_column: str = "id") -> testing_pb2.Result:
    message = testing_pb2.Result(
        result_id=str(row[id_column]),
        sample_id=str(row["sample_id"]),
        sample_barcode=row["sample_barcode"],
        sampling_org_id=str(row["sampling_org_id"]),
        lab_org_id=str(row["lab_org_id"]),
        version=row["version"],
        state=enum_value(testing_pb2.ResultState, row["state"]),
        outcome=enum_value(testing_pb2.Outcome, row["outcome"]),
        test_type=enum_value(testing_pb2.TestType, row["test_type"]),
        rat_device_id=row["rat_device_id"] or "",
        method=row["method"],
        collected_at=timestamp(row["collected_at"]),
        tested_at=timestamp(row["tested_at"]),
        recorded_at=timestamp(row["recorded_at"]),
        lab_reference=row["lab_reference"],
        pool_barcode=row["pool_barcode"],
        sampling_site=row["sampling_site"],
        amendment_reason=row["amendment_reason"],
        withdrawal_reason_text=row["withdrawal_reason_text"],
        withdrawn_at=timestamp(row["withdrawn_at"]),
    )
    if row["ct_value"] is not None:
        message.ct_value = row["ct_value"]
    if row["withdrawal_reason"]:
        message.withdrawal_reason = enum_value(testing_pb2.WithdrawalReason, row["withdrawal_reason"])
    return message


def pending_sample_message(row, *, id_column: str = "sample_id") -> testing_pb2.PendingSample:
    """A registered sample without a result ("result pending"): the sample columns of a feed or lookup row."""
    return testing_pb2.PendingSample(
        sample_id=str(row[id_column]),
        sample_barcode=row["sample_barcode"],
        sampling_org_id=str(row["sampling_org_id"]),
        lab_org_id=str(row["sample_lab_org_id"]),
        test_type=enum_value(testing_pb2.TestType, row["test_type"]),
        rat_device_id=row["rat_device_id"] or "",
        collected_at=timestamp(row["collected_at"]),
        registered_at=timestamp(row["registered_at"]),
        sampling_site=row["sampling_site"],
        pool_barcode=row["pool_barcode"],
        state=enum_value(testing_pb2.SampleState, row["sample_state"]),
    )
