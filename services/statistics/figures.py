"""What a caller may see: the province it may ask for, the period, and every figure with suppression.

Suppression: a count from 1 to 4 is never shown (`Count.suppressed`, "<5" in CSV), and neither is a
rate or a percentile computed from such a count; 0 is shown as 0. Raw numbers from the repository pass
through `Count.of`, `Rate.of` and `Duration.of` before they leave this room, for gRPC and CSV alike.
No answer carries a total over suppressed cells (a total minus the shown cells would give the hidden
one away): the backlog has no total column, the per-day lists no province total.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.common.auth import Principal, Role
from services.common.errors import FieldViolation, InvalidArgument, PermissionDenied, require
from services.statistics import repository

SUPPRESS_BELOW = 5
MAX_DAYS = 366
VIETNAM = ZoneInfo(repository.ZONE)
_PROVINCE = re.compile(r"^[0-9]{2}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
FIRST_YEAR, LAST_YEAR = 2020, 2100


@dataclass(frozen=True)
class Count:
    value: int
    suppressed: bool

    @classmethod
    def of(cls, n: int) -> Count:
        return cls(0, True) if 0 < n < SUPPRESS_BELOW else cls(n, False)

    def csv(self) -> str:
        return "<5" if self.suppressed else str(self.value)


@dataclass(frozen=True)
class Rate:
    value: float
    suppressed: bool

    @classmethod
    def of(cls, numerator: int, denominator: int) -> Rate:
        if Count.of(numerator).suppressed or Count.of(denominator).suppressed:
            return cls(0.0, True)
        return cls(numerator / denominator if denominator else 0.0, False)

    def csv(self, denominator: Count) -> str:
        if self.suppressed:
            return "<5"
        return "" if denominator.value == 0 else f"{self.value:.4f}"


@dataclass(frozen=True)
class Duration:
    seconds: int | None  # None: no values (or suppressed)
    suppressed: bool

    @classmethod
    def of(cls, seconds: int | None, count: int) -> Duration:
        if Count.of(count).suppressed:
            return cls(None, True)
        return cls(seconds if count else None, False)

    def csv(self) -> str:
        return "<5" if self.suppressed else ("" if self.seconds is None else str(self.seconds))


@dataclass(frozen=True)
class Period:
    first: date
    last: date

    def hours(self) -> tuple[datetime, datetime]:
        """[start, end) of the period's days in Vietnam time, as instants."""
        return (
            datetime.combine(self.first, time(), VIETNAM),
            datetime.combine(self.last + timedelta(days=1), time(), VIETNAM),
        )


def province(caller: Principal, requested: str) -> str:
    """The province a call reads: a HEALTH_AUTHORITY's own (naming another is PERMISSION_DENIED), or the
    one an OPERATOR names (required)."""
    if requested and not _PROVINCE.match(requested):
        raise InvalidArgument(
            "province_code must be 2 digits",
            [FieldViolation("province_code", "2-digit province code", "FIELD_FORMAT_INVALID")],
        )
    if caller.role is Role.HEALTH_AUTHORITY:
        if requested and requested != caller.province_code:
            raise PermissionDenied("a health authority reads its own province only", reason="SCOPE_NOT_ALLOWED")
        return caller.province_code
    if not requested:
        raise InvalidArgument(
            "province_code is required",
            [FieldViolation("province_code", "an operator names the province", "FIELD_REQUIRED")],
        )
    return requested


def _day(text: str, field: str, violations: list[FieldViolation]) -> date | None:
    if not text:
        violations.append(FieldViolation(field, "YYYY-MM-DD", "FIELD_REQUIRED"))
        return None
    try:
        if not _DATE.match(text):
            raise ValueError
        value = date.fromisoformat(text)
    except ValueError:
        violations.append(FieldViolation(field, "a calendar date, YYYY-MM-DD", "FIELD_FORMAT_INVALID"))
        return None
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        violations.append(FieldViolation(field, f"a year from {FIRST_YEAR} to {LAST_YEAR}", "FIELD_OUT_OF_RANGE"))
        return None
    return value


def period(from_date: str, to_date: str, fields: tuple[str, str] = ("range.from_date", "range.to_date")) -> Period:
    """The inclusive period of at most MAX_DAYS days; INVALID_ARGUMENT naming each bad field (`fields`)."""
    violations: list[FieldViolation] = []
    first = _day(from_date, fields[0], violations)
    last = _day(to_date, fields[1], violations)
    if first is not None and last is not None:
        if last < first:
            violations.append(FieldViolation(fields[1], "on or after from_date", "FIELD_OUT_OF_RANGE"))
        elif (last - first).days + 1 > MAX_DAYS:
            violations.append(
                FieldViolation(fields[1], f"at most {MAX_DAYS} days from from_date", "FIELD_OUT_OF_RANGE")
            )
    require(violations, "the period is invalid")
    assert first is not None and last is not None
    return Period(first, last)


@dataclass(frozen=True)
class TestRow:
    date: date
    district_code: str
    lab_org_id: uuid.UUID
    tests: Count
    positives: Count
    positivity: Rate
    pools_tested: Count
    pools_positive: Count
    pool_positivity: Rate

    @classmethod
    def of(cls, r: repository.DailyRow) -> TestRow:
        return cls(
            r.day,
            r.district_code,
            r.lab_org_id,
            Count.of(r.tests),
            Count.of(r.positives),
            Rate.of(r.positives, r.tests),
            Count.of(r.pools_tested),
            Count.of(r.pools_positive),
            Rate.of(r.pools_positive, r.pools_tested),
        )


@dataclass(frozen=True)
class TurnaroundRow:
    date: date
    district_code: str
    lab_org_id: uuid.UUID
    count: Count
    p50: Duration
    p90: Duration

    @classmethod
    def of(cls, r: repository.DailyRow) -> TurnaroundRow:
        return cls(
            r.day,
            r.district_code,
            r.lab_org_id,
            Count.of(r.tests),
            Duration.of(r.p50, r.tests),
            Duration.of(r.p90, r.tests),
        )


@dataclass(frozen=True)
class BacklogRow:
    lab_org_id: uuid.UUID
    under_24h: Count
    from_24_to_48h: Count
    over_48h: Count

    @classmethod
    def of(cls, r: repository.BacklogRow) -> BacklogRow:
        return cls(r.lab_org_id, Count.of(r.under_24h), Count.of(r.from_24_to_48h), Count.of(r.over_48h))


@dataclass(frozen=True)
class VerdictRow:
    checkpoint_id: uuid.UUID
    hour: datetime
    verdict: str
    count: Count

    @classmethod
    def of(cls, r: repository.VerdictRow) -> VerdictRow:
        return cls(r.checkpoint_id, r.hour, r.verdict, Count.of(r.scans))


Row = TestRow | TurnaroundRow | BacklogRow | VerdictRow

# CSV export (the operator CLI): a header and rows of text, suppressed cells as "<5".
KINDS = ("tests", "turnaround", "backlog", "verdicts")
HEADERS = {
    "tests": [
        "date",
        "district_code",
        "lab_organisation_id",
        "tests",
        "positives",
        "positivity",
        "pools_tested",
        "pools_positive",
        "pool_positivity",
    ],
    "turnaround": ["date", "district_code", "lab_organisation_id", "count", "p50_seconds", "p90_seconds"],
    "backlog": ["lab_organisation_id", "under_24_hours", "from_24_to_48_hours", "over_48_hours"],
    "verdicts": ["hour", "checkpoint_device_id", "verdict", "count"],
}


def csv_row(row: Row) -> list[str]:
    if isinstance(row, TestRow):
        return [
            row.date.isoformat(),
            row.district_code,
            str(row.lab_org_id),
            row.tests.csv(),
            row.positives.csv(),
            row.positivity.csv(row.tests),
            row.pools_tested.csv(),
            row.pools_positive.csv(),
            row.pool_positivity.csv(row.pools_tested),
        ]
    if isinstance(row, TurnaroundRow):
        return [
            row.date.isoformat(),
            row.district_code,
            str(row.lab_org_id),
            row.count.csv(),
            row.p50.csv(),
            row.p90.csv(),
        ]
    if isinstance(row, BacklogRow):
        return [str(row.lab_org_id), row.under_24h.csv(), row.from_24_to_48h.csv(), row.over_48h.csv()]
    return [row.hour.isoformat(), str(row.checkpoint_id), row.verdict, row.count.csv()]
