"""Value set files as an operator gets them from the EU gateway, and the operator's `valueset` commands.

New versions of the rapid-test device list are made from the shipped file (services/hcert/dcc/valuesets,
Apache-2.0, its LICENSE beside it): the same format, with devices added or marked inactive.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from tests.admin.cli_runner import ROOT, run_admin

DEVICES = "covid-19-lab-test-manufacturer-and-name"
SHIPPED_DEVICES = Path(ROOT) / "services" / "hcert" / "dcc" / "valuesets" / "test-manf-example.json"
OPERATOR = "lan.nguyen"


def device_list(folder: Path, file_name: str, *, add: tuple[str, ...] = (), inactive: tuple[str, ...] = ()) -> Path:
    """The shipped device list with devices `add`ed (active) and `inactive` ones marked so, written to a file."""
    document = json.loads(SHIPPED_DEVICES.read_text(encoding="utf-8"))
    today = datetime.now(UTC).date().isoformat()
    document["valueSetDate"] = today
    values = document["valueSetValues"]
    for code in add:
        values[code] = {
            "display": f"Công ty Thiết bị Y tế, SARS-CoV-2 Antigen Rapid Test {code}",
            "lang": "en",
            "active": True,
            "system": "https://covid-19-diagnostics.jrc.ec.europa.eu/devices",
            "version": today,
        }
    for code in inactive:
        values[code]["active"] = False
    path = folder / file_name
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def import_value_sets(database_url: str, *paths: Path | str, operator: str = OPERATOR) -> subprocess.CompletedProcess:
    """`python -m services.admin valueset import FILE… --operator NAME`, as an operator runs it."""
    return run_admin(database_url, {}, "valueset", "import", *map(str, paths), "--operator", operator)


def imported(proc: subprocess.CompletedProcess) -> list[dict]:
    """The JSON answer of a successful import (one entry per file)."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def list_value_sets(database_url: str, *args: str) -> list[dict]:
    proc = run_admin(database_url, {}, "valueset", "list", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
