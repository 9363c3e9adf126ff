"""Building and running the C load generators (grpcload, httpload) and reading their figures: the part
their Python wrappers share. Each prints one JSON line; the wrapper adds the command that produced it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def build_generator(source: Path, binary: Path, libraries: list[str], force: bool = False) -> Path:
    """Compile `source` into `binary` unless it is newer than the source; returns its path. Compiled to a
    temporary name and renamed, so a concurrent run never executes a half-written binary."""
    if not force and binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError(f"{binary.name} needs a C compiler (cc)")
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(partial), str(source), *libraries], check=True)
    partial.replace(binary)
    return binary


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
