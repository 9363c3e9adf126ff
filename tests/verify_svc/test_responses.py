"""Verify answers come from per-content templates: each answer must still carry exactly its own verdict."""

import dataclasses
from datetime import UTC, datetime, timedelta

from services.gen.covidtest.type.v1 import verdict_pb2
from services.registry.province_rules import Rule
from services.verify_svc.service import response_of
from services.verify_svc.verifier import Verdict

AT = datetime(2026, 11, 26, 8, 30, 15, 250_000, tzinfo=UTC)


def _rule(rule_id: str, version: int) -> Rule:
    return Rule(
        rule_id=rule_id,
        version=version,
        province_code="24",
        entry_type="TEST",
        test_type="NAAT",
        disabled=False,
        validity_seconds=72 * 3600,
        accepted_outcomes=("NEGATIVE",),
        require_complete_series=False,
        min_days_since_last_dose=None,
        max_days_since_last_dose=None,
        min_days_since_positive=None,
        max_days_since_positive=None,
        effective_from=AT,
        description="",
        created_at=AT,
    )


BASE = Verdict(
    "VALID",
    reason="",
    stage="",
    entry_type="TEST",
    test_type="NAAT",
    sample_collected_at=AT - timedelta(hours=5),
    valid_until=AT + timedelta(hours=60),
    certificate_id="URN:UVCI:01:VN:A#1",
    issuer_country="VN",
    status_source="CACHE",
    rule=_rule("r1", 1),
    kid=b"kid-0001",
    holder={
        "family_name": "Nguyễn",
        "given_name": "Văn An",
        "family_name_transliterated": "NGUYEN",
        "given_name_transliterated": "VAN<AN",
        "date_of_birth": "1985-03-14",
    },
)

# One other value for every field of a Verdict: each must change the answer.
OTHER = {
    "verdict": "REVOKED",
    "reason": "the issuer revoked this certificate",
    "stage": "base45",
    "entry_type": "RECOVERY",
    "test_type": "RAPID_ANTIGEN",
    "sample_collected_at": AT - timedelta(hours=6),
    "valid_until": AT + timedelta(hours=1),
    "certificate_id": "URN:UVCI:01:VN:B#2",
    "issuer_country": "KR",
    "status_source": "DATABASE",
    "rule": _rule("r1", 2),
    "kid": b"kid-0002",
    "accept_with_warning": True,
    "signature_valid": not BASE.signature_valid,
    "schema_error": "the DCC does not match the schema 1.3.0 at /dob (pattern)",
    "holder": {**BASE.holder, "given_name": "Văn Bình"},
}


def test_every_verdict_field_reaches_its_own_answer():
    assert set(OTHER) == {f.name for f in dataclasses.fields(Verdict)}, "a new Verdict field needs a case here"
    base = response_of(BASE, AT)
    assert response_of(BASE, AT) == base  # the same content: the same answer
    for name, value in OTHER.items():
        changed = response_of(dataclasses.replace(BASE, **{name: value}), AT)
        assert changed != base, f"{name} did not change the answer"
    assert response_of(BASE, AT) == base  # and the template was not altered by a copy


def test_each_answer_carries_its_own_scan_time_and_is_its_own_message():
    first, second = response_of(BASE, AT), response_of(BASE, AT + timedelta(seconds=1, microseconds=5))
    assert first.checked_at.ToDatetime(tzinfo=UTC) == AT
    assert second.checked_at.ToDatetime(tzinfo=UTC) == AT + timedelta(seconds=1, microseconds=5)
    second.reason = "changed by a caller"
    assert response_of(BASE, AT).reason == "" and first.reason == ""
    assert first.verdict == verdict_pb2.VERDICT_VALID and first.given_name == "Văn An"
    assert first.rule_id == "r1" and first.rule_version == 1 and first.kid == b"kid-0001"
