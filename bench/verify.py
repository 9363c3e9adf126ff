"""`make bench-verify`: Verify throughput and latency of the real verify_svc against a bare grpc.aio echo.

Starts the real result_svc, publish_svc and verify_svc as their own processes (ServiceProcesses) on a
fresh database of the Postgres at DATABASE_URL (default: the local one) with an active ES256 signing
key, registers and releases N results (default 200) and reads their certificates from the feed (a
partner stream), so the relay has written their statuses to Redis and Verify takes the cache-hit
path. A CHECKPOINT device of province "24" scans; SCANS_PER_MINUTE is set far above the load so the
rate limiter counts but never refuses. In the same run a bare grpc.aio echo server
(bench/echo_server.py: same grpcio, uvloop, one process) serves the same method path and returns a
fixed VerifyResponse.

Both are driven by h2load (Debian package nghttp2-client) with the same pre-framed unary gRPC body
and the same concurrency:

0. check: one direct gRPC Verify must answer VALID from the cache; then a count-based h2load run whose
   every request must be counted as VALID in verify_svc's verdict counts (verification_counts), so
   the load is known to get real verdicts, not errors in HTTP 200 responses;
1. max throughput of verify_svc and of the echo server (req/s, p50/p99 from h2load's per-request log),
   in turns, --rounds times each; the median run of each gives the ratio. Beside each verify_svc run a
   probe client sends a Verify every 0.1 s, and at least 90 % of the probes must answer from CACHE:
   the run measured the cache-hit path, not reads falling through to Postgres. (On the saturated
   2-core machine a Redis reply now and then arrives 0.5-1.4 s late, also to an independent client;
   verify_svc then reads from Postgres for about a second, as designed. Such reads only slow it down,
   so the figure stays a lower bound for the cache-hit path; their count is printed);
2. latency at about half verify_svc's max rate (h2load --rps per client), verify_svc and the echo server
   at the same rate: with one stream per connection (each connection a checkpoint gateway with one
   scan in flight: the headline p99), and verify_svc again with the 16 streams per connection of the
   max run. h2load's rate mode sends a connection's streams in bursts: even the echo server's p99 about
   doubles with 16 streams at the same rate;
3. VerifyBatch with 50 scans per call: scans per second.

Prints each figure, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    MACHINE,
    ROOT,
    ServiceProcesses,
    bench_platform,
    percentile,
)
from bench.feed import record, register  # noqa: E402
from services.common.auth import Role  # noqa: E402
from services.common.db import connect  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.type.v1 import verdict_pb2  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc  # noqa: E402
from tests.conftest import bearer, make_principal  # noqa: E402
from tests.publish_svc.conftest import activate_new_key  # noqa: E402

VERIFY_PATH = "/covidtest.verify.v1.VerifyService/Verify"
BATCH_PATH = "/covidtest.verify.v1.VerifyService/VerifyBatch"
BATCH_SIZE = 50


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


async def read_certificates(stub, token: str, count: int, timeout: float = 120) -> list[str]:
    """The QR strings of the first `count` certificates on the feed, from position 1."""
    qrs: list[str] = []
    call = stub.StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(token), wait_for_ready=True
    )
    deadline = time.monotonic() + timeout
    try:
        while len(qrs) < count:
            message = await asyncio.wait_for(call.read(), max(0.01, deadline - time.monotonic()))
            if message is grpc.aio.EOF:
                raise RuntimeError("the feed stream ended")
            qrs += [event.certificate.qr for event in message.events if event.certificate.qr]
    finally:
        call.cancel()
    return qrs[:count]


async def valid_count(dsn: str, device_id: str) -> int:
    conn = await connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT coalesce(sum(count), 0) FROM verification_counts "
            "WHERE checkpoint_id = $1::uuid AND verdict = 'VALID'",
            device_id,
        )
    finally:
        await conn.close()


async def wait_for_valid_count(dsn: str, device_id: str, expected: int, timeout: float = 15) -> int:
    """verify_svc adds its verdict counts to the table every 5 s: wait until they reach `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        count = await valid_count(dsn, device_id)
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.5)


PROBES_FROM_CACHE = 0.9  # the least share of probe answers from CACHE for a valid run


async def probed(run, stub, request, auth) -> tuple:
    """`run()` (an h2load run, in a thread) while a probe client sends one Verify every 0.1 s. Returns
    the run's result and the probes' status sources; raises unless PROBES_FROM_CACHE of them came
    from CACHE, so the run is known to have measured the cache-hit path (reads falling through to
    Postgres during a Redis hiccup show as DATABASE)."""
    done = asyncio.Event()
    sources: collections.Counter = collections.Counter()

    async def probe() -> None:
        while not done.is_set():
            answer = await stub.Verify(request, metadata=auth, timeout=5)
            sources[verdict_pb2.StatusSource.Name(answer.status_source)] += 1
            await asyncio.sleep(0.1)  # pacing: a light probe beside the load

    prober = asyncio.ensure_future(probe())
    try:
        result = await asyncio.to_thread(run)
    finally:
        done.set()
        await prober
    if sources["STATUS_SOURCE_CACHE"] < PROBES_FROM_CACHE * sum(sources.values()):
        raise RuntimeError(
            f"status sources seen during the run: {dict(sources)}; the benchmark measures the cache-hit path"
        )
    return result, sources


def start_echo(services: ServiceProcesses) -> int:
    from tools.servers import free_port, wait_for_port

    port = free_port()
    services.processes.append(
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(port)], cwd=ROOT, env=services.env
        )
    )
    if not wait_for_port(port, 30):
        raise RuntimeError("the echo server did not start")
    return port


async def main(args) -> dict:
    async with bench_platform("verify", RELAY_POLL_SECONDS="0.05", SCANS_PER_MINUTE=str(1_000_000_000)) as (
        dsn,
        secrets,
        services,
    ):
        return await run(args, dsn, secrets, services)


async def released_qrs(
    dsn: str, secrets: dict, services: ServiceProcesses, count: int, batch: int = 100, timeout: float = 120
) -> tuple[list[str], dict]:
    """Setup as in bench/feed.py: an active ES256 key, intake, release of `count` results through the real
    relay, then their certificates' QR texts from the feed; returns them and a checkpoint device."""
    await activate_new_key(dsn, secrets, "ES256")
    unit, lab = await make_principal(dsn, Role.SAMPLER), await make_principal(dsn, Role.LAB)
    partner = await make_principal(dsn, Role.PARTNER, personal_data_access=True)  # receives the QR codes
    device = await make_principal(dsn, Role.CHECKPOINT, province="24")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{services.start('result_svc')}") as channel:
        intake = result_service_pb2_grpc.ResultServiceStub(channel)
        barcodes = await register(intake, bearer(unit["token"]), lab["id"], count, 0)
        for i in range(0, len(barcodes), batch):
            await record(intake, bearer(lab["token"]), barcodes[i : i + batch], {})
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{services.start('publish_svc')}", options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        qrs = await read_certificates(
            publish_service_pb2_grpc.PublishServiceStub(channel), partner["token"], count, timeout=timeout
        )
    print(f"setup: {len(qrs)} results released, their certificates read from the feed", flush=True)
    return qrs, device


async def run(args, dsn: str, secrets: dict, services: ServiceProcesses) -> dict:
    qrs, device = await released_qrs(dsn, secrets, services, args.results)

    verify_port = services.start("verify_svc", SERVER_PROCESSES=str(args.processes))
    echo_port = start_echo(services)
    single = vpb.VerifyRequest(qr=qrs[0])
    batch = vpb.VerifyBatchRequest(scans=[vpb.VerifyRequest(qr=qr) for qr in qrs[1 : 1 + BATCH_SIZE]])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_port}") as channel:
        stub = verify_service_pb2_grpc.VerifyServiceStub(channel)
        auth = bearer(device["token"])
        deadline, direct = time.monotonic() + 10, 0
        while True:  # the relay writes the statuses to Redis as it publishes; allow it a moment
            answer = await stub.Verify(single, metadata=auth, wait_for_ready=True, timeout=10)
            direct += 1
            if answer.status_source == verdict_pb2.STATUS_SOURCE_CACHE or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if answer.verdict != verdict_pb2.VERDICT_VALID or answer.status_source != verdict_pb2.STATUS_SOURCE_CACHE:
            raise RuntimeError(
                f"the benchmark QR does not verify as VALID from the cache: "
                f"{verdict_pb2.Verdict.Name(answer.verdict)} "
                f"({verdict_pb2.StatusSource.Name(answer.status_source)}): {answer.reason}"
            )
        batch_answer = await stub.VerifyBatch(batch, metadata=auth, timeout=30)
        bad = [r for r in batch_answer.results if r.verdict != verdict_pb2.VERDICT_VALID]
        if len(batch_answer.results) != BATCH_SIZE or bad:
            raise RuntimeError(f"VerifyBatch: {len(bad)} of {len(batch_answer.results)} scans not VALID")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") as channel:
        echo_answer = await verify_service_pb2_grpc.VerifyServiceStub(channel).Verify(single, timeout=10)
    print(
        f"check: a direct Verify answered VALID (status from CACHE, rule {answer.rule_id} v{answer.rule_version}); "
        f"VerifyBatch of {BATCH_SIZE}: all VALID",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="bench_verify_") as workdir:
        return await measure(
            args,
            dsn,
            device,
            direct,
            Path(workdir),
            verify_port,
            echo_port,
            single,
            batch,
            answer,
            batch_answer,
            echo_answer,
        )


async def measure(
    args,
    dsn: str,
    device: dict,
    direct: int,
    workdir: Path,
    verify_port: int,
    echo_port: int,
    single,
    batch,
    answer,
    batch_answer,
    echo_answer,
) -> dict:
    verify_bytes, batch_bytes = len(grpc_frame(answer)), len(grpc_frame(batch_answer))
    auth = bearer(device["token"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{verify_port}") as channel:
        probe_stub = verify_service_pb2_grpc.VerifyServiceStub(channel)
        load = H2Load(device["token"], workdir, args.clients, args.streams)
        body, batch_body = grpc_frame(single), grpc_frame(batch)

        # 0. Every request of the load gets a real VALID verdict: count them in verify_svc's own counts.
        before = await wait_for_valid_count(dsn, device["id"], direct + BATCH_SIZE)
        checked = load.run(verify_port, VERIFY_PATH, body, requests=args.check_requests, response_bytes=verify_bytes)
        print(f"check: {checked.command}", flush=True)
        counted = await wait_for_valid_count(dsn, device["id"], before + checked.done)
        if counted - before != checked.done:
            raise RuntimeError(f"h2load sent {checked.done} requests but verify_svc counted {counted - before} VALID")
        print(
            f"check: all {checked.done} h2load requests were answered VALID (verify_svc's verdict counts)", flush=True
        )

        # 1. Max throughput at the same concurrency: verify and echo in turns, the median run of each
        # (the same server's figure varies by ±15 % from run to run on this shared machine).
        rounds: dict[str, list[Load]] = {"verify": [], "echo": []}
        not_cached = 0  # probe answers whose status did not come from the cache
        echo_bytes = len(grpc_frame(echo_answer))
        for round_number in range(1, args.rounds + 1):
            for name, port, size in (("verify", verify_port, verify_bytes), ("echo", echo_port, echo_bytes)):

                def max_run(port=port, size=size):
                    return load.run(
                        port, VERIFY_PATH, body, duration=args.duration, warmup=args.warmup, response_bytes=size
                    )

                probes = ""
                if name == "verify":
                    r, sources = await probed(max_run, probe_stub, single, auth)
                    not_cached += sum(sources.values()) - sources["STATUS_SOURCE_CACHE"]
                    probes = (
                        f"; {sum(sources.values())} probe calls beside it, {sources['STATUS_SOURCE_CACHE']} from CACHE"
                    )
                else:
                    r = max_run()
                rounds[name].append(r)
                print(
                    f"{name} max, round {round_number}: {r.rps:.0f} calls/s, p50 {r.p50:.2f} ms, "
                    f"p99 {r.p99:.2f} ms ({r.done} calls, {args.clients} connections x {args.streams} streams"
                    f"{probes})\n  {r.command}",
                    flush=True,
                )
        runs = {name: sorted(loads, key=lambda r: r.rps)[len(loads) // 2] for name, loads in rounds.items()}
        ratio = runs["verify"].rps / runs["echo"].rps
        print(
            f"median of {args.rounds}: verify {runs['verify'].rps:.0f} calls/s, echo {runs['echo'].rps:.0f} calls/s; "
            f"ratio verify/echo: {ratio:.2f}",
            flush=True,
        )

        # 2. Latency at half the maximum rate.
        per_client = max(1, round(runs["verify"].rps / 2 / args.clients))
        halves = {}
        for name, port, size, streams in (
            ("verify", verify_port, verify_bytes, 1),
            ("echo", echo_port, echo_bytes, 1),
            ("verify_16_streams", verify_port, verify_bytes, args.streams),
        ):
            halves[name] = load.run(
                port,
                VERIFY_PATH,
                body,
                duration=args.duration,
                warmup=args.warmup,
                rps_per_client=per_client,
                streams=streams,
                response_bytes=size,
            )
            r = halves[name]
            print(
                f"{name.split('_')[0]} at half load ({args.clients} connections x {streams} streams): {r.rps:.0f} "
                f"calls/s (target {per_client * args.clients}), p50 {r.p50:.2f} ms, p99 {r.p99:.2f} ms"
                f"\n  {r.command}",
                flush=True,
            )
        half = halves["verify"]

        # 3. VerifyBatch, 50 scans per call.
        batched = load.run(
            verify_port,
            BATCH_PATH,
            batch_body,
            duration=args.duration,
            warmup=args.warmup,
            streams=args.batch_streams,
            response_bytes=batch_bytes,
        )
        batch_scans = batched.rps * BATCH_SIZE
        print(
            f"VerifyBatch of {BATCH_SIZE}: {batched.rps:.1f} calls/s = {batch_scans:.0f} scans/s, "
            f"p50 {batched.p50:.1f} ms, p99 {batched.p99:.1f} ms per call\n  {batched.command}",
            flush=True,
        )

    return {
        "verify_rps": round(runs["verify"].rps),
        "echo_rps": round(runs["echo"].rps),
        "ratio": round(ratio, 3),
        "verify_p99_ms": round(half.p99, 2),
        "verify_p50_ms": round(half.p50, 2),
        "half_load_rps": round(half.rps),
        "echo_half_load_p99_ms": round(halves["echo"].p99, 2),
        "verify_half_load_p99_ms_16_streams": round(halves["verify_16_streams"].p99, 2),
        "verify_max_p50_ms": round(runs["verify"].p50, 2),
        "verify_max_p99_ms": round(runs["verify"].p99, 2),
        "echo_p50_ms": round(runs["echo"].p50, 2),
        "echo_p99_ms": round(runs["echo"].p99, 2),
        "batch_scans_per_s": round(batch_scans),
        "batch_size": BATCH_SIZE,
        "clients": args.clients,
        "streams": args.streams,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "verify_rps_runs": [round(r.rps) for r in rounds["verify"]],
        "echo_rps_runs": [round(r.rps) for r in rounds["echo"]],
        "probes_not_from_cache": not_cached,
        "grpcio": grpc.__version__,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200, help="results released (certificates issued) beforehand")
    parser.add_argument("--clients", type=int, default=8, help="h2load connections (-c)")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams per connection (-m)")
    parser.add_argument("--batch-streams", type=int, default=2, help="concurrent VerifyBatch calls per connection")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per h2load run (-D)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="max-throughput runs of each server (median kept)")
    parser.add_argument("--check-requests", type=int, default=1000, help="requests of the counted check run (-n)")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="verify_svc SERVER_PROCESSES (one per core shares the port; the echo server runs one)",
    )
    arguments = parser.parse_args()
    if arguments.results < 1 + BATCH_SIZE:
        parser.error(f"--results must be at least {1 + BATCH_SIZE}")
    if shutil.which("h2load") is None:
        print(
            "bench/verify.py needs h2load (HTTP/2 load generator): apt-get install -y nghttp2-client", file=sys.stderr
        )
        sys.exit(2)
    figures = asyncio.run(main(arguments))
    print(json.dumps({"bench": "verify", **figures, "verify_processes": arguments.processes, "machine": MACHINE}))
