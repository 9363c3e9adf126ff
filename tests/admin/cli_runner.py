"""The operator CLI run as an operator runs it: a subprocess with the keys given (and no others)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY_SETTINGS = ("PII_KEYS", "PII_PEPPER", "SIGNING_KEYS_KEK", "SIGNING_KEYS_KEK_PUBLIC")


def run_admin(database_url: str, keys: dict[str, str | None], *args: str, timeout: float = 120):
    """`python -m services.admin --database-url URL *args` with only the key settings of `keys` set (a None
    value leaves that one out)."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_SETTINGS}
    env.update({k: v for k, v in keys.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "services.admin", "--database-url", database_url, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]
