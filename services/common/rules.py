"""Province rules: the in-memory form verify_svc and the offline verifier use, and its protobuf form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf.duration_pb2 import Duration

from services.common.protoconv import enum_name, enum_value, timestamp
from services.gen.covidtest.type.v1 import certificate_pb2, province_rule_pb2, testing_pb2


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


def rule_from_row(r) -> Rule:
    """A `province_rules` row (or a dict with the same keys) as a Rule."""
    return Rule(rule_id=r["rule_id"], version=r["version"], province_code=r["province_code"],
                entry_type=r["entry_type"], test_type=r["test_type"], disabled=r["disabled"],
                validity_seconds=r["validity_seconds"], accepted_outcomes=tuple(r["accepted_outcomes"]),
                require_complete_series=r["require_complete_series"],
                min_days_since_last_dose=r["min_days_since_last_dose"],
                max_days_since_last_dose=r["max_days_since_last_dose"],
                min_days_since_positive=r["min_days_since_positive"],
                max_days_since_positive=r["max_days_since_positive"], effective_from=r["effective_from"],
                description=r["description"], created_at=r["created_at"])


def rule_message(rule: Rule) -> province_rule_pb2.ProvinceRule:
    message = province_rule_pb2.ProvinceRule(
        rule_id=rule.rule_id, version=rule.version, province_code=rule.province_code,
        entry_type=enum_value(certificate_pb2.EntryType, rule.entry_type), disabled=rule.disabled,
        accepted_outcomes=[enum_value(testing_pb2.Outcome, o) for o in rule.accepted_outcomes],
        complete_series_required=rule.require_complete_series,
        min_days_since_last_dose=rule.min_days_since_last_dose or 0,
        max_days_since_last_dose=rule.max_days_since_last_dose or 0,
        min_days_since_first_positive=rule.min_days_since_positive or 0,
        max_days_since_first_positive=rule.max_days_since_positive or 0,
        effective_from=timestamp(rule.effective_from), description=rule.description,
        created_at=timestamp(rule.created_at))
    if rule.test_type:
        message.test_type = enum_value(testing_pb2.TestType, rule.test_type)
    if rule.validity_seconds:
        message.validity.CopyFrom(Duration(seconds=rule.validity_seconds))
    return message


def rule_from_message(r: province_rule_pb2.ProvinceRule) -> Rule:
    """The inverse of rule_message (a rule downloaded with GetRules, for the offline verifier)."""
    return Rule(rule_id=r.rule_id, version=r.version, province_code=r.province_code,
                entry_type=enum_name(certificate_pb2.EntryType, r.entry_type),
                test_type=enum_name(testing_pb2.TestType, r.test_type) or None, disabled=r.disabled,
                validity_seconds=r.validity.seconds or None,
                accepted_outcomes=tuple(enum_name(testing_pb2.Outcome, o) for o in r.accepted_outcomes),
                require_complete_series=r.complete_series_required,
                min_days_since_last_dose=r.min_days_since_last_dose or None,
                max_days_since_last_dose=r.max_days_since_last_dose or None,
                min_days_since_positive=r.min_days_since_first_positive or None,
                max_days_since_positive=r.max_days_since_first_positive or None,
                effective_from=r.effective_from.ToDatetime(tzinfo=timezone.utc), description=r.description,
                created_at=r.created_at.ToDatetime(tzinfo=timezone.utc))
