"""h2load (Debian nghttp2-client) for unary gRPC: one pre-framed body for every call.

bench/loadgen_echo.py compares grpcload (a different body per call) with it on the echo server.
"""

from __future__ import annotations

import re
import shlex
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import percentile


def grpc_frame(message) -> bytes:
    """A gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, the bytes."""
    payload = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


@dataclass
class Load:
    """What one h2load run measured."""

    command: str
    rps: float
    done: int
    data_bytes: int
    latencies_ms: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 0.99)


class H2Load:
    """Runs h2load with a pre-framed body against one server and checks that every request succeeded."""

    def __init__(self, token: str, workdir: Path, clients: int, streams: int):
        self.token, self.workdir, self.clients, self.streams = token, workdir, clients, streams
        self.runs = 0

    def run(
        self,
        port: int,
        path: str,
        body: bytes,
        *,
        duration: float | None = None,
        warmup: float = 0,
        requests: int | None = None,
        rps_per_client: int | None = None,
        streams: int | None = None,
        response_bytes: int = 0,
    ) -> Load:
        self.runs += 1
        body_file, log_file = self.workdir / f"body{self.runs}.bin", self.workdir / f"requests{self.runs}.log"
        body_file.write_bytes(body)
        args = ["h2load", "-c", str(self.clients), "-m", str(streams or self.streams)]
        if duration is not None:
            args += ["-D", f"{round(duration * 1000)}ms"]
            if warmup:
                args += ["--warm-up-time", f"{round(warmup * 1000)}ms"]
        else:
            args += ["-n", str(requests)]
        if rps_per_client:
            args += ["--rps", str(rps_per_client)]
        args += [
            "-d",
            str(body_file),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-H",
            f"authorization: Bearer {self.token}",
            "--log-file",
            str(log_file),
            f"http://127.0.0.1:{port}{path}",
        ]
        shown = shlex.join(args).replace(self.token, "$TOKEN")
        out = subprocess.run(args, capture_output=True, text=True, timeout=(duration or 60) + warmup + 60)
        text = out.stdout
        if out.returncode != 0 or "finished in" not in text:
            raise RuntimeError(f"h2load failed ({out.returncode}): {shown}\n{text}\n{out.stderr}")
        rps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text).group(1))
        total, started, done, succeeded, failed, errored, timeout = map(
            int,
            re.search(
                r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                r"(\d+) timeout",
                text,
            ).groups(),
        )
        status_2xx = int(re.search(r"status codes: (\d+) 2xx", text).group(1))
        data_bytes = int(re.search(r"\((\d+)\) data", text).group(1))
        problems = []
        if done == 0 or succeeded != done or status_2xx != done or failed or errored or timeout:
            problems.append(
                f"{done} done, {succeeded} succeeded, {status_2xx} with HTTP 200, {failed} failed, "
                f"{errored} errored, {timeout} timed out"
            )
        # A gRPC error is HTTP 200 with grpc-status in a trailers-only answer: no DATA at all. Every
        # successful answer carries a response frame of about the size of the one checked directly
        # (the timestamps' varints may differ by a few bytes).
        if response_bytes and data_bytes < done * (response_bytes - 8):
            problems.append(
                f"{data_bytes} response bytes for {done} answers of about {response_bytes} bytes: "
                "some answers had no message (a gRPC error)"
            )
        latencies = []
        for line in log_file.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 3:
                if fields[1] != "200":
                    problems.append(f"a request ended with status {fields[1]}")
                    break
                latencies.append(int(fields[2]) / 1000)
        if problems:
            raise RuntimeError(f"{shown}: " + "; ".join(problems) + f"\n{text}")
        return Load(shown, rps, done, data_bytes, latencies)
