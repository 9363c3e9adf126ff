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
