"""The EU DCC value sets the platform validates against, shipped in services/hcert/dcc/valuesets.

They come from the public DCC value-set repository (Apache-2.0; see services/hcert/dcc/NOTICE).
The rapid antigen device list changes over time: replace the file with the current publication and
redeploy to accept new devices.
"""

from __future__ import annotations

import json
from pathlib import Path

VALUESETS_DIR = Path(__file__).resolve().parent / "dcc" / "valuesets"


def load(name: str) -> dict[str, dict]:
    with open(VALUESETS_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)["valueSetValues"]


# Rapid antigen test devices (DCC `ma`), by identifier: only active entries are accepted.
RAT_DEVICES: frozenset[str] = frozenset(k for k, v in load("test-manf-example").items() if v.get("active", True))


# The codes province rules are written in terms of (services.registry.province_rules): a DCC test entry's
# `tt` (value set covid-19-lab-test-type) gives the rule's test type, its `tr` (covid-19-lab-result) the
# outcome a rule accepts. The verifier reads them here; the checkpoint bundle carries them to devices.
RULE_TEST_TYPES = {"LP6464-4": "NAAT", "LP217198-3": "RAPID_ANTIGEN"}
DETECTED, NOT_DETECTED = "260373001", "260415000"
RULE_OUTCOMES = {NOT_DETECTED: "NEGATIVE", DETECTED: "POSITIVE"}
