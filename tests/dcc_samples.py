"""Test payloads and rules shared by the in-process verifier and codec tests."""

from __future__ import annotations

from datetime import datetime

from services.registry.province_rules import Rule, rule_from_row


def negative_naat_dcc(sample_collected: datetime, uvci: str) -> dict:
    """The DCC JSON of a negative NAAT test taken at `sample_collected` (whole seconds, UTC)."""
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Nguyen", "fnt": "NGUYEN"},
        "dob": "1990-01-01",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP6464-4",
                "sc": sample_collected.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tr": "260415000",
                "tc": "Bac Giang CDC",
                "co": "VN",
                "is": "MOH",
                "ci": uvci,
            }
        ],
    }


def naat_rule(
    province: str, effective_from: datetime, *, validity_hours: int = 72, disabled: bool = False, version: int = 1
) -> Rule:
    """A province's NAAT test rule accepting NEGATIVE results for `validity_hours` from the sample."""
    return rule_of_tests(province, effective_from, validity_hours=validity_hours, disabled=disabled, version=version)


def rule_of_tests(
    province: str,
    effective_from: datetime,
    *,
    test_type: str = "NAAT",
    validity_hours: int = 72,
    disabled: bool = False,
    version: int = 1,
) -> Rule:
    """A province's rule for tests of `test_type` accepting NEGATIVE results for `validity_hours`."""
    prefix = "naat" if test_type == "NAAT" else "rat"
    return rule_from_row(
        {
            "rule_id": f"{prefix}-{province}",
            "version": version,
            "province_code": province,
            "entry_type": "TEST",
            "test_type": test_type,
            "disabled": disabled,
            "validity_seconds": validity_hours * 3600,
            "accepted_outcomes": ["NEGATIVE"],
            "require_complete_series": False,
            "min_days_since_last_dose": None,
            "max_days_since_last_dose": None,
            "min_days_since_positive": None,
            "max_days_since_positive": None,
            "effective_from": effective_from,
            "description": "",
            "created_at": effective_from,
        }
    )
