"""httpload from Python: build the C load generator (bench/loadgen/httpload.c), write its bodies file, run it.

httpload is the HTTP/1.1 twin of grpcload (bench/grpcload.py): POST requests with JSON bodies that
cycle through many different bodies, over keep-alive connections with one request in flight each,
closed loop or paced (rate), with the same JSON figures, so the latency the HTTP/JSON gateway adds
to the gRPC service can be measured with the same kind of client. See the comment at the top of
httpload.c.

    python bench/httpload.py build        # compiles bench/loadgen/build/httpload (git-ignored)

Needs only a C compiler (libc, no other library).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script (`... build`)

from bench.loadgen_run import build_generator, run_generator  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "loadgen" / "httpload.c"
BINARY = SOURCE.parent / "build" / "httpload"


def build(force: bool = False) -> Path:
    """Compile httpload (libc only) if the binary is missing or older than its source; returns its path."""
    return build_generator(SOURCE, BINARY, [], force)


def write_bodies(path: Path, bodies: Iterable[bytes]) -> int:
    """Write request bodies one per line (each a JSON document on one line, e.g.
    json.dumps(obj, separators=(",", ":")).encode()); returns how many. Refuses a body that is empty or
    holds a newline: httpload reads the file line by line."""
    count = 0
    with open(path, "wb") as out:
        for body in bodies:
            if not isinstance(body, bytes):
                raise TypeError(f"body {count}: bytes expected, not {type(body).__name__}")
            if b"\n" in body:
                raise ValueError(f"body {count} holds a newline: httpload reads one body per line")
            if not body:
                raise ValueError(f"body {count} is empty: httpload refuses an empty line")
            out.write(body + b"\n")
            count += 1
    return count


def run(
    port: int,
    path: str,
    bodies: Path,
    *,
    host: str = "127.0.0.1",
    connections: int = 8,
    duration: float = 10,
    warmup: float = 0,
    rate: float | None = None,
    headers: Iterable[str] = (),
    check: bool = True,
) -> dict:
    """One httpload run; returns its JSON line as a dict plus "command". Raises if a request failed
    (check=True) or the generator did not print its figures."""
    args = [
        str(build()),
        "--host", host, "--port", str(port), "--path", path, "--bodies", str(bodies),
        "--connections", str(connections), "--duration", str(duration), "--warmup", str(warmup),
    ]  # fmt: skip
    return run_generator(args, rate=rate, headers=headers, timeout=duration + warmup + 60, check=check)


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build(force=True))
    else:
        print(__doc__)
        sys.exit(2)
