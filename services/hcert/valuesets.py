"""The EU DCC value sets shipped with the platform, in services/hcert/dcc/valuesets.

They come from the public DCC value-set repository (Apache-2.0; see services/hcert/dcc/NOTICE). Each
file is the first version (version 0) of its set: operators import newer publications into the database
(`python -m services.admin valueset import`, services.registry.value_sets), and the services use the
latest imported version of a set, or this file while the database holds none.
"""

from __future__ import annotations

import json
from pathlib import Path

VALUESETS_DIR = Path(__file__).resolve().parent / "dcc" / "valuesets"


def load(name: str) -> dict[str, dict]:
    """The values of the shipped file `name`.json (code → display, active, …)."""
    with open(VALUESETS_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)["valueSetValues"]


def shipped_files() -> list[Path]:
    """Every shipped value-set file, by file name."""
    return sorted(VALUESETS_DIR.glob("*.json"))


# The codes province rules are written in terms of (services.registry.province_rules): a DCC test entry's
# `tt` (value set covid-19-lab-test-type) gives the rule's test type, its `tr` (covid-19-lab-result) the
# outcome a rule accepts. The verifier reads them here; the checkpoint bundle carries them to devices.
# These mappings are fixed: an imported version of those two sets does not change them.
RULE_TEST_TYPES = {"LP6464-4": "NAAT", "LP217198-3": "RAPID_ANTIGEN"}
DETECTED, NOT_DETECTED = "260373001", "260415000"
RULE_OUTCOMES = {NOT_DETECTED: "NEGATIVE", DETECTED: "POSITIVE"}
