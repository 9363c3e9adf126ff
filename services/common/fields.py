"""Field rules every service applies the same way: a Vietnamese phone number, a date of birth, now.

result_svc checks them on intake and publish_svc on a citizen's lookup, so a lookup matches exactly
what intake stored.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from services.common.errors import FieldViolation

PHONE_LOCAL = re.compile(r"^0([0-9]{9})$")
PHONE_E164 = re.compile(r"^\+84([0-9]{9})$")
DOB = re.compile(r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalise_phone(value: str) -> str | None:
    """A local (0xxxxxxxxx) or E.164 (+84xxxxxxxxx) mobile number as E.164, or None if it is neither."""
    match = PHONE_LOCAL.match(value) or PHONE_E164.match(value)
    return f"+84{match.group(1)}" if match else None


def check_date_of_birth(value: str, field: str, violations: list[FieldViolation], today: date) -> str | None:
    """YYYY-MM-DD, YYYY-MM or YYYY, from 1900 and not after `today`; else None and a violation added."""
    match = DOB.match(value or "")
    if not value:
        violations.append(FieldViolation(field, "required: YYYY-MM-DD, YYYY-MM or YYYY", "FIELD_REQUIRED"))
        return None
    if not match:
        violations.append(FieldViolation(field, "YYYY-MM-DD, YYYY-MM or YYYY", "FIELD_FORMAT_INVALID"))
        return None
    year, month, day = (int(g) if g else None for g in match.groups())
    assert year is not None  # the pattern requires the year
    try:
        earliest = date(year, month or 1, day or 1)
    except ValueError:
        violations.append(FieldViolation(field, "not a calendar date", "FIELD_FORMAT_INVALID"))
        return None
    if year < 1900 or earliest > today:
        violations.append(FieldViolation(field, "year 1900 or later, not in the future", "FIELD_OUT_OF_RANGE"))
        return None
    return value
