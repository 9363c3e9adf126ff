"""grpcload from Python: build the C load generator (bench/loadgen/grpcload.c), write its bodies file, run it.

grpcload sends gRPC unary calls whose request bodies cycle through many different pre-serialised
messages (h2load sends one body for every call). See the comment at the top of grpcload.c and
docs/benchmarks.md, "A load generator with a different body per call (issue 15)".

    python bench/grpcload.py build        # compiles bench/loadgen/build/grpcload (git-ignored)

Needs a C compiler and libnghttp2-dev (Debian: apt-get install -y libnghttp2-dev).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script (`... build`)

from bench.loadgen_run import build_generator, run_generator  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "loadgen" / "grpcload.c"
BINARY = SOURCE.parent / "build" / "grpcload"


def build(force: bool = False) -> Path:
    """Compile grpcload if the binary is missing or older than its source; returns its path."""
    if not Path("/usr/include/nghttp2/nghttp2.h").exists():
        raise RuntimeError("grpcload needs libnghttp2-dev: apt-get install -y libnghttp2-dev")
    return build_generator(SOURCE, BINARY, ["-lnghttp2"], force)


def frame(payload: bytes) -> bytes:
    """A gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def write_bodies(path: Path, messages: Iterable) -> int:
    """Write protobuf messages (or raw bytes) as concatenated gRPC frames; returns how many."""
    count = 0
    with open(path, "wb") as out:
        for message in messages:
            out.write(frame(message if isinstance(message, bytes) else message.SerializeToString()))
            count += 1
    return count


def run(
    port: int,
    path: str,
    bodies: Path,
    *,
    host: str = "127.0.0.1",
    connections: int = 8,
    streams: int = 16,
    duration: float = 10,
    warmup: float = 0,
    rate: float | None = None,
    headers: Iterable[str] = (),
    check: bool = True,
) -> dict:
    """One grpcload run; returns its JSON line as a dict plus "command". Raises if a call failed
    (check=True) or the generator did not print its figures."""
    args = [
        str(build()),
        "--host", host, "--port", str(port), "--path", path, "--bodies", str(bodies),
        "--connections", str(connections), "--streams", str(streams),
        "--duration", str(duration), "--warmup", str(warmup),
    ]  # fmt: skip
    return run_generator(args, rate=rate, headers=headers, timeout=duration + warmup + 60, check=check)


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build(force=True))
    else:
        print(__doc__)
        sys.exit(2)
