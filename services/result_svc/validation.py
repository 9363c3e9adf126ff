"""Field validation of intake requests: pure functions, no database.

Each `check_*` turns one request item into a normalised value object plus the list of its field
violations (full paths such as `samples[3].person.phone`, with a covidtest.type.v1.ErrorReason name),
so a batch can report every bad field of every item at once. Rules are the ones documented in
protos/covidtest/{type,result}/v1/*.proto. The helpers at the end build the violations and errors
that intake reports after its database checks, in the same form, and turn an item's violations into
the google.rpc messages of a batch reply.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sized
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from services.common import i18n
from services.common.errors import FieldViolation, InvalidArgument
from services.common.fields import check_date_of_birth, has_control, normalise_phone
from services.common.identity import identity_text
from services.common.protoconv import enum_name, to_datetime
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2
from services.hcert.payload import transliterate

CLOCK_SKEW = timedelta(minutes=5)
MAX_SAMPLE_AGE = timedelta(days=14)
MAX_BATCH = 1000

BARCODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CITIZEN_ID = re.compile(r"^[0-9]{12}$")
OLD_ID = re.compile(r"^[0-9]{9}$")
PASSPORT = re.compile(r"^[A-Z0-9]{1,20}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
PROVINCE = re.compile(r"^[0-9]{2}$")
DISTRICT = re.compile(r"^[0-9]{3}$")
LAB_REFERENCE = re.compile(r"^[\x20-\x7e]{0,64}$")


@dataclass(frozen=True)
class PersonData:
    """A registration's person, normalised (names trimmed, phone in E.164)."""

    identity: str | None  # "TYPE|COUNTRY|NUMBER"
    full_name: str
    family_name: str
    given_name: str
    date_of_birth: str
    phone: str | None  # E.164
    province_code: str
    district_code: str


@dataclass(frozen=True)
class Registration:
    """One valid RegisterSamples item."""

    barcode: str
    person: PersonData
    test_type: str
    rat_device_id: str | None
    collected_at: datetime
    sampling_site: str
    lab_org_id: uuid.UUID
    pool_barcode: str | None
    retest_of_barcode: str | None


@dataclass(frozen=True)
class Submission:
    """One valid RecordResults item (or an AmendResult's new result): for a sample or for a pool."""

    sample_barcode: str | None
    pool_barcode: str | None
    sampling_org_id: uuid.UUID | None
    outcome: str
    tested_at: datetime
    method: str
    ct_value: float | None
    lab_reference: str

    @property
    def target(self) -> tuple[str, str]:
        """("pool" or "sample", barcode): what the result is for (check_submission requires one of them)."""
        if self.pool_barcode:
            return "pool", self.pool_barcode
        assert self.sample_barcode is not None
        return "sample", self.sample_barcode

    def same_result(
        self, outcome: str, tested_at: datetime, method: str | None, ct_value: float | None, lab_reference: str | None
    ) -> bool:
        return (self.outcome, self.tested_at, self.method, _ct(self.ct_value), self.lab_reference) == (
            outcome,
            tested_at,
            method or "",
            _ct(ct_value),
            lab_reference or "",
        )


def _ct(value: float | None) -> float | None:
    # Postgres `real` and protobuf `float` are both 32-bit: compare at that precision.
    return None if value is None else round(float(value), 3)


def _v(violations: list[FieldViolation], field: str, reason: str, description: str) -> None:
    violations.append(FieldViolation(field, description, reason))


def _text(value: str) -> str:
    return " ".join(value.split())


def _has_control(value: str) -> bool:
    # One rule for every service's single-line text (services.common.fields): C0, DEL and C1 refused.
    return has_control(value)


def parse_uuid(value: str, field: str, violations: list[FieldViolation], required: bool = True) -> uuid.UUID | None:
    if not value:
        if required:
            _v(violations, field, "FIELD_REQUIRED", "required: a UUID")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        _v(violations, field, "FIELD_FORMAT_INVALID", "must be a UUID")
        return None


def check_barcode(value: str, field: str, violations: list[FieldViolation], required: bool = True) -> str | None:
    if not value:
        if required:
            _v(violations, field, "FIELD_REQUIRED", "required")
        return None
    if not BARCODE.match(value):
        _v(violations, field, "FIELD_FORMAT_INVALID", "1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'")
        return None
    return value


def check_time(
    ts: Timestamp, field: str, violations: list[FieldViolation], now: datetime, *, oldest: timedelta | None = None
) -> datetime | None:
    if not ts.ByteSize():
        _v(violations, field, "FIELD_REQUIRED", "required")
        return None
    try:
        value = to_datetime(ts, field)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        return None
    if value > now + CLOCK_SKEW:
        _v(violations, field, "TIME_IN_FUTURE", "must not be more than 5 minutes in the future")
        return None
    if oldest is not None and value < now - oldest:
        _v(violations, field, "TIME_TOO_OLD", f"must not be more than {oldest.days} days in the past")
        return None
    return value


def _check_identity(doc: person_pb2.PersonIdentity, path: str, violations: list[FieldViolation]) -> str:
    """The document as services.common.identity writes it, the text its keyed hash is made of."""
    doc_type = enum_name(person_pb2.IdentityDocumentType, doc.type)
    country = doc.country
    if not doc_type:
        _v(violations, f"{path}.identity.type", "FIELD_REQUIRED", "CITIZEN_ID, OLD_ID or PASSPORT")
    elif doc_type in ("CITIZEN_ID", "OLD_ID"):
        pattern, digits = (CITIZEN_ID, 12) if doc_type == "CITIZEN_ID" else (OLD_ID, 9)
        if not pattern.match(doc.number):
            _v(violations, f"{path}.identity.number", "FIELD_FORMAT_INVALID", f"exactly {digits} digits")
        if country not in ("", "VN"):
            _v(violations, f"{path}.identity.country", "FIELD_NOT_ALLOWED", "empty or VN for Vietnamese documents")
        country = "VN"
    else:
        if not PASSPORT.match(doc.number):
            _v(violations, f"{path}.identity.number", "FIELD_FORMAT_INVALID", "1-20 of A-Z and 0-9, upper case")
        if not COUNTRY.match(country):
            _v(
                violations,
                f"{path}.identity.country",
                "FIELD_REQUIRED" if not country else "FIELD_FORMAT_INVALID",
                "ISO 3166-1 alpha-2 country, upper case",
            )
    return identity_text(doc_type, country, doc.number)


def _check_names(person: person_pb2.Person, path: str, violations: list[FieldViolation]) -> tuple[str, str, str]:
    """(full name, family name, given name), trimmed; the parts come from the full name when not given."""
    full_name = _text(person.full_name)
    if not full_name or len(full_name) > 200 or _has_control(person.full_name):
        _v(
            violations,
            f"{path}.full_name",
            "FIELD_REQUIRED" if not full_name else "FIELD_FORMAT_INVALID",
            "1-200 characters, no control characters",
        )
    family, given = _text(person.family_name), _text(person.given_name)
    if family or given:
        if not family or len(family) > 80 or _has_control(family):
            _v(violations, f"{path}.family_name", "FIELD_FORMAT_INVALID", "1-80 characters when a name part is given")
        if len(given) > 80 or _has_control(given):
            _v(violations, f"{path}.given_name", "FIELD_FORMAT_INVALID", "0-80 characters")
    elif full_name:
        family, _, given = full_name.partition(" ")  # Vietnamese order: family name first
    if (family or given) and not (transliterate(family) or transliterate(given)):
        # The certificate needs the machine-readable (ICAO 9303) form of the name.
        _v(
            violations,
            f"{path}.family_name",
            "FIELD_FORMAT_INVALID",
            "the name needs Latin letters: give family_name and given_name as in the passport's machine-readable zone",
        )
    return full_name, family, given


def check_person(
    person: person_pb2.Person, path: str, violations: list[FieldViolation], today: date
) -> PersonData | None:
    start = len(violations)
    has_identity = person.HasField("identity") and (person.identity.type or person.identity.number)
    identity = _check_identity(person.identity, path, violations) if has_identity else None
    phone = None
    if person.phone:
        phone = normalise_phone(person.phone)
        if phone is None:
            _v(violations, f"{path}.phone", "FIELD_FORMAT_INVALID", "'0' + 9 digits or '+84' + 9 digits")
    elif not has_identity:
        _v(violations, f"{path}.identity", "FIELD_REQUIRED", "an identity document or a phone number is required")
    full_name, family, given = _check_names(person, path, violations)
    if person.personal_data_erased:  # output only: the platform sets it on a person it has erased
        _v(violations, f"{path}.personal_data_erased", "FIELD_NOT_ALLOWED", "output only; leave it false")
    dob = check_date_of_birth(person.date_of_birth, f"{path}.date_of_birth", violations, today)
    if not PROVINCE.match(person.province_code):
        _v(
            violations,
            f"{path}.province_code",
            "FIELD_REQUIRED" if not person.province_code else "FIELD_FORMAT_INVALID",
            "2-digit province code",
        )
    if person.district_code and not DISTRICT.match(person.district_code):
        _v(violations, f"{path}.district_code", "FIELD_FORMAT_INVALID", "3-digit district code")
    if len(violations) > start:
        return None
    assert dob is not None  # a date of birth that did not parse added its violation
    return PersonData(identity, full_name, family, given, dob, phone, person.province_code, person.district_code)


def _check_test(
    item: pb.SampleRegistration, path: str, violations: list[FieldViolation], rat_devices: Collection[str]
) -> tuple[str, str | None]:
    """The test type's name and the rapid antigen device (required for, and only for, rapid antigen tests, and
    one of `rat_devices`: the active devices of the current DCC device list)."""
    test_type = enum_name(testing_pb2.TestType, item.test_type)
    rat_device = item.rat_device_id or None
    if not test_type:
        _v(violations, f"{path}.test_type", "FIELD_REQUIRED", "NAAT or RAPID_ANTIGEN")
    elif test_type == "RAPID_ANTIGEN":
        if not rat_device:
            _v(violations, f"{path}.rat_device_id", "FIELD_REQUIRED", "required for rapid antigen tests")
        elif rat_device not in rat_devices:
            _v(
                violations,
                f"{path}.rat_device_id",
                "VALUE_NOT_IN_VALUE_SET",
                "not an active device of the current DCC rapid-test device list",
            )
    elif rat_device:
        _v(violations, f"{path}.rat_device_id", "FIELD_NOT_ALLOWED", "only for rapid antigen tests")
    return test_type, rat_device


def check_registration(
    item: pb.SampleRegistration, path: str, now: datetime, rat_devices: Collection[str]
) -> tuple[Registration | None, list[FieldViolation]]:
    """`rat_devices`: the rapid antigen devices accepted (services.result_svc.value_sets holds the current ones)."""
    violations: list[FieldViolation] = []
    barcode = check_barcode(item.sample_barcode, f"{path}.sample_barcode", violations)
    if not item.HasField("person"):
        _v(violations, f"{path}.person", "FIELD_REQUIRED", "required")
        person = None
    else:
        person = check_person(item.person, f"{path}.person", violations, now.date())
    test_type, rat_device = _check_test(item, path, violations, rat_devices)
    collected_at = check_time(item.collected_at, f"{path}.collected_at", violations, now, oldest=MAX_SAMPLE_AGE)
    site = _text(item.sampling_site)
    if not site or len(site) > 200 or _has_control(item.sampling_site):
        _v(
            violations,
            f"{path}.sampling_site",
            "FIELD_REQUIRED" if not site else "FIELD_FORMAT_INVALID",
            "1-200 characters",
        )
    lab = parse_uuid(item.lab_org_id, f"{path}.lab_org_id", violations)
    pool = check_barcode(item.pool_barcode, f"{path}.pool_barcode", violations, required=False)
    retest_of = check_barcode(
        item.retest_of_sample_barcode, f"{path}.retest_of_sample_barcode", violations, required=False
    )
    if pool and (test_type == "RAPID_ANTIGEN" or retest_of):
        _v(violations, f"{path}.pool_barcode", "POOL_NOT_ALLOWED", "rapid antigen tests and retests are tested alone")
    if violations:
        return None, violations
    # Each of these is None only when it added its violation.
    assert barcode is not None and person is not None and collected_at is not None and lab is not None
    return Registration(barcode, person, test_type, rat_device, collected_at, site, lab, pool, retest_of), []


def check_result_fields(
    outcome_value: int,
    tested_at_ts: Timestamp,
    method: str,
    ct_value: float | None,
    lab_reference: str,
    path: str,
    violations: list[FieldViolation],
    now: datetime,
) -> tuple[str, datetime | None]:
    """The outcome's name ("" if missing) and tested_at (None if invalid); every problem is in `violations`."""
    outcome = enum_name(testing_pb2.Outcome, outcome_value)
    if not outcome:
        _v(violations, f"{path}.outcome", "FIELD_REQUIRED", "NEGATIVE, POSITIVE, INCONCLUSIVE or INVALID_SAMPLE")
    tested_at = check_time(tested_at_ts, f"{path}.tested_at", violations, now)
    if len(method) > 100 or _has_control(method):
        _v(violations, f"{path}.method", "FIELD_FORMAT_INVALID", "0-100 characters")
    if ct_value is not None and not (0 < ct_value <= 50):
        _v(violations, f"{path}.ct_value", "FIELD_OUT_OF_RANGE", "greater than 0 and at most 50")
    if not LAB_REFERENCE.match(lab_reference):
        _v(violations, f"{path}.lab_reference", "FIELD_FORMAT_INVALID", "0-64 printable ASCII characters")
    return outcome, tested_at


def check_submission(
    item: pb.ResultSubmission, path: str, now: datetime
) -> tuple[Submission | None, list[FieldViolation]]:
    violations: list[FieldViolation] = []
    which = item.WhichOneof("target")
    sample = pool = None
    if which is None:
        _v(violations, f"{path}.sample_barcode", "FIELD_REQUIRED", "sample_barcode or pool_barcode is required")
    elif which == "sample_barcode":
        sample = check_barcode(item.sample_barcode, f"{path}.sample_barcode", violations)
    else:
        pool = check_barcode(item.pool_barcode, f"{path}.pool_barcode", violations)
    org = parse_uuid(item.sampling_org_id, f"{path}.sampling_org_id", violations, required=False)
    ct = item.ct_value if item.HasField("ct_value") else None
    outcome, tested_at = check_result_fields(
        item.outcome, item.tested_at, item.method, ct, item.lab_reference, path, violations, now
    )
    if violations:
        return None, violations
    assert tested_at is not None  # a missing or invalid tested_at added its violation
    return Submission(sample, pool, org, outcome, tested_at, item.method, ct, item.lab_reference), []


# --- violations and errors reported by intake -----------------------------------------------------------


def violation(field: str, reason: str, description: str) -> FieldViolation:
    return FieldViolation(field, description, reason)


def check_batch(items: Sized, field: str) -> None:
    """A batch holds 1 to MAX_BATCH items; otherwise the whole call is INVALID_ARGUMENT."""
    if not items:
        raise InvalidArgument(f"{field} is empty", [violation(field, "FIELD_REQUIRED", "1-1000 items")])
    if len(items) > MAX_BATCH:
        raise InvalidArgument(f"too many {field}", [violation(field, "TOO_MANY_ITEMS", f"at most {MAX_BATCH} items")])


def ambiguous_barcode() -> InvalidArgument:
    return InvalidArgument(
        "several sampling units used this barcode; give sampling_org_id",
        [violation("sampling_org_id", "SAMPLE_BARCODE_AMBIGUOUS", "required for this barcode")],
        reason="SAMPLE_BARCODE_AMBIGUOUS",
    )


def rpc_violations(violations: list[FieldViolation]) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """An item's violations as the google.rpc messages of its per-item answer in a batch reply, each with its
    reason's text in the caller's language (`localized_message`) beside the English description."""
    language = i18n.language_var.get() or i18n.DEFAULT_LANGUAGE
    locale = i18n.LOCALES[language]
    return [
        error_details_pb2.BadRequest.FieldViolation(
            field=v.field,
            description=v.description,
            reason=v.reason,
            localized_message=error_details_pb2.LocalizedMessage(
                locale=locale, message=i18n.error_message(v.reason, "INVALID_ARGUMENT", language)
            ),
        )
        for v in violations
    ]
