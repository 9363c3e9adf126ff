"""Province rules: versioned data in Postgres, the in-memory form verify_svc and the offline verifier
use, and its protobuf form.

Setting a rule writes a new version (the rule id is kept per province, entry type and test type) and
NOTIFYs verify_svc, which reloads its rules at once. Shared by AdminService and the operator CLI; the
SQL is in `repository.province_rules`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.duration_pb2 import Duration

from services.common import audit
from services.common.auth import Principal
from services.common.errors import FieldViolation, InvalidArgument
from services.common.fields import check_text
from services.common.protoconv import enum_name, enum_value, timestamp
from services.gen.covidtest.type.v1 import certificate_pb2, province_rule_pb2, testing_pb2
from services.registry.repository import province_rules as repo

PROVINCE = re.compile(r"^[0-9]{2}$")
ENTRY_TYPES = ("TEST", "VACCINATION", "RECOVERY")
TEST_TYPES = ("NAAT", "RAPID_ANTIGEN")


@dataclass(frozen=True)
class Rule:
    rule_id: str
    version: int
    province_code: str
    entry_type: str
    test_type: str | None
    disabled: bool
    validity_seconds: int | None
    accepted_outcomes: tuple[str, ...]
    require_complete_series: bool
    min_days_since_last_dose: int | None
    max_days_since_last_dose: int | None
    min_days_since_positive: int | None
    max_days_since_positive: int | None
    effective_from: datetime
    description: str
    created_at: datetime


def rule_from_row(r: asyncpg.Record | Mapping[str, Any]) -> Rule:
    """A `province_rules` row (or a dict with the same keys) as a Rule."""
    return Rule(
        rule_id=r["rule_id"],
        version=r["version"],
        province_code=r["province_code"],
        entry_type=r["entry_type"],
        test_type=r["test_type"],
        disabled=r["disabled"],
        validity_seconds=r["validity_seconds"],
        accepted_outcomes=tuple(r["accepted_outcomes"]),
        require_complete_series=r["require_complete_series"],
        min_days_since_last_dose=r["min_days_since_last_dose"],
        max_days_since_last_dose=r["max_days_since_last_dose"],
        min_days_since_positive=r["min_days_since_positive"],
        max_days_since_positive=r["max_days_since_positive"],
        effective_from=r["effective_from"],
        description=r["description"],
        created_at=r["created_at"],
    )


def rule_message(rule: Rule) -> province_rule_pb2.ProvinceRule:
    message = province_rule_pb2.ProvinceRule(
        rule_id=rule.rule_id,
        version=rule.version,
        province_code=rule.province_code,
        entry_type=enum_value(certificate_pb2.EntryType, rule.entry_type),
        disabled=rule.disabled,
        accepted_outcomes=[enum_value(testing_pb2.Outcome, o) for o in rule.accepted_outcomes],
        complete_series_required=rule.require_complete_series,
        min_days_since_last_dose=rule.min_days_since_last_dose or 0,
        max_days_since_last_dose=rule.max_days_since_last_dose or 0,
        min_days_since_first_positive=rule.min_days_since_positive or 0,
        max_days_since_first_positive=rule.max_days_since_positive or 0,
        effective_from=timestamp(rule.effective_from),
        description=rule.description,
        created_at=timestamp(rule.created_at),
    )
    if rule.test_type:
        message.test_type = enum_value(testing_pb2.TestType, rule.test_type)
    if rule.validity_seconds:
        message.validity.CopyFrom(Duration(seconds=rule.validity_seconds))
    return message


def rule_from_message(r: province_rule_pb2.ProvinceRule) -> Rule:
    """The inverse of rule_message (a rule downloaded with GetRules, for the offline verifier)."""
    return Rule(
        rule_id=r.rule_id,
        version=r.version,
        province_code=r.province_code,
        entry_type=enum_name(certificate_pb2.EntryType, r.entry_type),
        test_type=enum_name(testing_pb2.TestType, r.test_type) or None,
        disabled=r.disabled,
        validity_seconds=r.validity.seconds or None,
        accepted_outcomes=tuple(enum_name(testing_pb2.Outcome, o) for o in r.accepted_outcomes),
        require_complete_series=r.complete_series_required,
        min_days_since_last_dose=r.min_days_since_last_dose or None,
        max_days_since_last_dose=r.max_days_since_last_dose or None,
        min_days_since_positive=r.min_days_since_first_positive or None,
        max_days_since_positive=r.max_days_since_first_positive or None,
        effective_from=r.effective_from.ToDatetime(tzinfo=UTC),
        description=r.description,
        created_at=r.created_at.ToDatetime(tzinfo=UTC),
    )


# --- setting and listing versions ------------------------------------------------------------------


@dataclass
class RuleInput:
    province_code: str
    entry_type: str
    test_type: str | None
    disabled: bool = False
    validity: timedelta | None = None
    accepted_outcomes: tuple[str, ...] = ()
    complete_series_required: bool = False
    min_days_since_last_dose: int = 0
    max_days_since_last_dose: int = 0
    min_days_since_first_positive: int = 0
    max_days_since_first_positive: int = 0
    effective_from: datetime | None = None
    description: str = ""


def check_rule(r: RuleInput) -> list[FieldViolation]:
    """Every violation of a new rule version, in field order."""
    v: list[FieldViolation] = []
    _check_kind(r, v)
    _check_fields_of_other_kinds(r, v)
    _check_test_rule(r, v)
    _check_day_ranges(r, v)
    if r.effective_from is not None and r.effective_from < datetime.now(UTC) - timedelta(minutes=5):
        v.append(FieldViolation("rule.effective_from", "now or later", "TIME_TOO_OLD"))
    # Multi-line free text: tab and line breaks are fine, other control characters (NUL) are not.
    check_text(r.description, "rule.description", 500, v, multiline=True)
    return v


def _check_kind(r: RuleInput, v: list[FieldViolation]) -> None:
    """Province, entry type, and a test type exactly for test rules."""
    if not PROVINCE.match(r.province_code or ""):
        v.append(
            FieldViolation("rule.province_code", '2 digits, "00" for the national default', "FIELD_FORMAT_INVALID")
        )
    if r.entry_type not in ENTRY_TYPES:
        v.append(FieldViolation("rule.entry_type", "TEST, VACCINATION or RECOVERY", "FIELD_REQUIRED"))
    if r.entry_type == "TEST" and r.test_type not in TEST_TYPES:
        v.append(FieldViolation("rule.test_type", "NAAT or RAPID_ANTIGEN for a test rule", "FIELD_REQUIRED"))
    if r.entry_type in ("VACCINATION", "RECOVERY") and r.test_type:
        v.append(FieldViolation("rule.test_type", "only for test rules", "FIELD_NOT_ALLOWED"))


def _check_fields_of_other_kinds(r: RuleInput, v: list[FieldViolation]) -> None:
    """Each entry type's fields are set only on an enabled rule of that entry type."""
    vaccination = (r.complete_series_required, r.min_days_since_last_dose, r.max_days_since_last_dose)
    recovery = (r.min_days_since_first_positive, r.max_days_since_first_positive)
    test = (r.validity, r.accepted_outcomes)
    for name, values, owner in (
        ("validity", test, "TEST"),
        ("min_days_since_last_dose", vaccination, "VACCINATION"),
        ("min_days_since_first_positive", recovery, "RECOVERY"),
    ):
        if any(values) and (r.entry_type != owner or r.disabled):
            v.append(FieldViolation(f"rule.{name}", f"only for an enabled {owner.lower()} rule", "FIELD_NOT_ALLOWED"))


def _check_test_rule(r: RuleInput, v: list[FieldViolation]) -> None:
    """An enabled test rule needs its validity and its accepted outcomes."""
    if r.entry_type != "TEST" or r.disabled:
        return
    if r.validity is None or not timedelta(hours=1) <= r.validity <= timedelta(days=30) or r.validity.seconds % 60:
        v.append(FieldViolation("rule.validity", "whole minutes, 1 h to 30 days", "FIELD_OUT_OF_RANGE"))
    if (
        not r.accepted_outcomes
        or len(set(r.accepted_outcomes)) != len(r.accepted_outcomes)
        or not set(r.accepted_outcomes) <= {"NEGATIVE", "POSITIVE"}
    ):
        v.append(
            FieldViolation(
                "rule.accepted_outcomes",
                "a non-empty subset of NEGATIVE, POSITIVE without repeats",
                "FIELD_FORMAT_INVALID",
            )
        )


def _check_day_ranges(r: RuleInput, v: list[FieldViolation]) -> None:
    for low, high, name in (
        (r.min_days_since_last_dose, r.max_days_since_last_dose, "max_days_since_last_dose"),
        (r.min_days_since_first_positive, r.max_days_since_first_positive, "max_days_since_first_positive"),
    ):
        if low > 365 or high > 3650 or (high and high <= low):
            v.append(FieldViolation(f"rule.{name}", "min 0-365, max 1-3650 and greater than min", "FIELD_OUT_OF_RANGE"))


async def set_rule(
    conn: asyncpg.Connection, actor: Principal | None, r: RuleInput, request_id: str = ""
) -> asyncpg.Record:
    """A new version of the rule for (province, entry type, test type); returns its `province_rules` row."""
    if violations := check_rule(r):
        raise InvalidArgument("invalid province rule", violations)
    rule_id = await repo.rule_id_of(conn, r.province_code, r.entry_type, r.test_type)
    row = await repo.insert_rule(
        conn,
        rule_id=rule_id or str(uuid.uuid4()),
        province_code=r.province_code,
        entry_type=r.entry_type,
        test_type=r.test_type,
        validity_seconds=int(r.validity.total_seconds()) if r.validity else None,
        accepted_outcomes=list(r.accepted_outcomes),
        require_complete_series=r.complete_series_required,
        # 0 means "no bound" in the request, NULL in the table
        min_days_since_last_dose=r.min_days_since_last_dose or None,
        max_days_since_last_dose=r.max_days_since_last_dose or None,
        min_days_since_positive=r.min_days_since_first_positive or None,
        max_days_since_positive=r.max_days_since_first_positive or None,
        disabled=r.disabled,
        effective_from=r.effective_from,
        description=r.description,
        created_by=uuid.UUID(actor.id) if actor else None,
    )
    await repo.notify_province_rules(conn)
    await audit.record(
        conn,
        actor,
        "SET_PROVINCE_RULE",
        "province_rule",
        f"{row['rule_id']}@{row['version']}",
        request_id,
        {"province_code": r.province_code, "entry_type": r.entry_type},
    )
    return row


async def list_rules(
    conn: asyncpg.Connection, province: str | None, history: bool, limit: int, after_version: int | None
) -> list[asyncpg.Record]:
    """Newest version first (`province_rules` rows); `after_version` is the previous page's last version."""
    return await repo.list_rules(conn, province, history, limit, after_version)
