"""Field rules every service applies the same way: a Vietnamese phone number, a date of birth, now,
and free text.

result_svc checks them on intake and publish_svc on a citizen's lookup, so a lookup matches exactly
what intake stored. Free text (names, descriptions, reasons) is checked by `check_text` everywhere it
reaches Postgres, which refuses NUL in `text`: without the check that is an INTERNAL, not the
INVALID_ARGUMENT bad input gets.
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


# C0 controls, DEL and C1 controls: never meaningful in a name or a single-line label (NUL is also
# refused by Postgres). Multi-line free text keeps tab, line feed and carriage return (CRLF).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control(value: str, *, multiline: bool = False) -> bool:
    """Whether `value` holds a control character `check_text` refuses (tab and newlines allowed if multiline)."""
    return (_CONTROL_MULTILINE if multiline else _CONTROL).search(value) is not None


def check_text(
    value: str,
    field: str,
    max_len: int | None,
    violations: list[FieldViolation],
    *,
    required: bool = False,
    multiline: bool = False,
) -> str | None:
    """`value` if it is acceptable free text, else None and one violation added.

    At most `max_len` characters (None: the caller bounds or truncates it itself), not blank when
    `required`, and no control character: none at all in a single-line value (names, labels, ids),
    only tab, LF and CR in `multiline` text (descriptions, reasons)."""
    if required and not value.strip():
        violations.append(FieldViolation(field, "required", "FIELD_REQUIRED"))
        return None
    if max_len is not None and len(value) > max_len:
        violations.append(FieldViolation(field, f"at most {max_len} characters", "FIELD_FORMAT_INVALID"))
        return None
    if has_control(value, multiline=multiline):
        allowed = "only tab and line breaks" if multiline else "none"
        violations.append(FieldViolation(field, f"no control characters ({allowed})", "FIELD_FORMAT_INVALID"))
        return None
    return value


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
