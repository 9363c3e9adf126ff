"""Every error reason the services send is in the contract's catalogue (covidtest.type.v1.ErrorReason), so a
client can switch on it: a reason added in code without its enum value fails here."""

import re
from pathlib import Path

from services.gen.covidtest.type.v1 import error_pb2

ROOT = Path(__file__).resolve().parents[1]
REASON = re.compile(r'reason="([A-Z][A-Z0-9_]*)"')


def test_every_reason_in_the_code_is_an_error_reason_of_the_contract():
    catalogue = {name.removeprefix("ERROR_REASON_") for name in error_pb2.ErrorReason.keys()}
    used: dict[str, str] = {}
    for path in (ROOT / "services").rglob("*.py"):
        if "gen" in path.relative_to(ROOT).parts:
            continue
        for reason in REASON.findall(path.read_text(encoding="utf-8")):
            used.setdefault(reason, str(path.relative_to(ROOT)))
    assert "BUNDLE_NOT_ISSUED" in used  # the scan sees the code it is meant to check
    missing = {reason: where for reason, where in used.items() if reason not in catalogue}
    assert not missing, f"reasons sent but not in covidtest.type.v1.ErrorReason: {missing}"
