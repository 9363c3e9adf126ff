"""Running one of the C load generators (grpcload, httpload) and reading its figures: the part their
Python wrappers share. Each prints one JSON line; the wrapper adds the command that produced it."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterable


def run_generator(args: list[str], *, rate: float | None, headers: Iterable[str], timeout: float, check: bool) -> dict:
    """Run the generator with `args` (plus --rate and each --header), return its JSON line as a dict with
    "command"; raise if it printed no figures, or (check) if any call failed."""
    args = list(args)
    if rate:
        args += ["--rate", str(rate)]
    for header in headers:
        args += ["--header", header]
    name = args[0].rsplit("/", 1)[-1]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    shown = shlex.join(args)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{name} failed ({out.returncode}): {shown}\n{out.stdout}\n{out.stderr}")
    result = json.loads(lines[-1])
    result["command"] = shown
    if check and (out.returncode != 0 or result["errors"]):
        raise RuntimeError(f"{name}: {result['errors']} failed calls: {shown}\n{out.stderr}")
    return result
