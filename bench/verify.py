"""`make bench-verify`: Verify as checkpoints use it (every scan a different citizen's QR) against a bare
grpc.aio echo server with the same number of processes, driven by the same client.

Setup: the real result_svc, publish_svc and verify_svc as their own processes on a fresh database with
an active ES256 key; --results results registered, recorded and released through the real relay, their
certificates read from the feed (so the relay has written every status to Redis, as in production); a
CHECKPOINT device of province "24"; SCANS_PER_MINUTE far above the load (the limiter counts, never
refuses). The echo server (bench/echo_server.py) runs --processes times on one port (SO_REUSEPORT),
as verify_svc runs SERVER_PROCESSES=--processes.

The client is grpcload (bench/loadgen/grpcload.c, on libnghttp2): h2load sends one body for every call,
grpcload cycles through a file of different framed requests, so each call carries a different QR. Every
verify_svc run below starts a fresh verify_svc (no per-QR memory from an earlier run) and waits until
all its processes serve (health SERVING), so the connections spread over all of them.

0. check: a direct Verify answers VALID with the status from CACHE; a 2 s grpcload run over the
   distinct QRs must be counted VALID by verify_svc itself (its verdict counts), call for call;
1. first scans (the headline): max throughput with a different QR on every call, --rounds times, each
   beside an echo run with the same bodies and client; a run that had to send a QR twice fails the
   benchmark (raise --results). Then the repeat-scan path on the same process: one QR over and over
   (answered from per-QR memory: the row real checkpoint traffic almost never takes);
2. latency at half the first-scan max rate, one stream per connection (each connection a checkpoint
   gateway with one scan in flight), verify_svc and the echo server at the same paced rate;
3. VerifyBatch: 50 different QRs per call, never repeated within the run; then one batch repeated;
4. the HTTP/JSON gateway (one process, as `python -m services.gateway` runs): Verify at a moderate paced
   rate (--gateway-rate, 8 connections with one call in flight each) straight to verify_svc (grpcload)
   and through the gateway as POST /v1/verify (httpload, the HTTP/1.1 twin of grpcload: the same kind of
   C client, a different QR per call), --rounds times alternating, each on a fresh verify_svc; the
   difference of the p99s is what the gateway adds. The same against the echo server (the gateway's own
   cost, without verify_svc's run-to-run variance), then the gateway's maximum (closed loop).

Prints each run with its grpcload command, and ends with one JSON line: `verify_rps`, `echo_rps`,
`ratio`, `verify_p99_ms`, `batch_scans_per_s` are first scans; `repeat_*` the repeat-scan path;
`gateway_*` the HTTP/JSON gateway (`gateway_added_p99_ms`: its p99 minus the direct p99 at that rate).

    python bench/verify.py [--results 60000] [--processes 2] [--duration 8] [--warmup 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import grpcload, httpload  # noqa: E402
from bench.common import MACHINE, ROOT, ServiceProcesses, bench_platform  # noqa: E402
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


async def released_qrs(
    dsn: str, secrets: dict, services: ServiceProcesses, count: int, batch: int = 500, timeout: float = 900
) -> tuple[list[str], dict]:
    """An active ES256 key, intake, release of `count` results through the real relay, then their
    certificates' QR texts from the feed; returns them and a checkpoint device of province 24."""
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


def start_echo(services: ServiceProcesses, processes: int = 1) -> int:
    """`processes` echo servers on one free port (SO_REUSEPORT, as verify_svc's SERVER_PROCESSES)."""
    from bench.common import wait_for_serving
    from tools.servers import free_port

    port = free_port()
    for _ in range(processes):
        services.processes.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(port)],
                cwd=ROOT,
                env=services.env,
            )
        )
    if not wait_for_serving(port, 30):
        raise RuntimeError("the echo server did not start")
    return port


def show(name: str, r: dict, token: str) -> None:
    print(
        f"{name}: {r['rps']:.0f} calls/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
        f"{r['distinct_sent']} of {r['bodies']} bodies sent in {r['sent_total']} calls"
        f"{' (REPEATED)' if r['repeats'] else ''}\n  " + r["command"].replace(token, "$TOKEN"),
        flush=True,
    )


def start_gateway(services: ServiceProcesses, verify_port: int) -> tuple[subprocess.Popen, int]:
    """The HTTP/JSON gateway (one process) in front of verify_svc on `verify_port`; returns it and its port
    once /readyz answers."""
    import urllib.request

    from tools.servers import free_port

    port = free_port()
    target = f"127.0.0.1:{verify_port}"
    env = {
        **services.env,
        "GATEWAY_HTTP_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(port),
        "UPSTREAM_INSECURE": "true",
        **{name: target for name in ("RESULT_SVC_TARGET", "PUBLISH_SVC_TARGET", "VERIFY_SVC_TARGET")},
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the gateway did not become ready")


async def main(args) -> dict:
    grpcload.build()
    httpload.build()
    async with bench_platform("verify", RELAY_POLL_SECONDS="0.05", SCANS_PER_MINUTE=str(1_000_000_000)) as (
        dsn,
        secrets,
        services,
    ):
        qrs, device = await released_qrs(dsn, secrets, services, args.results)
        echo_port = start_echo(services, args.processes)
        with tempfile.TemporaryDirectory(prefix="bench_verify_") as workdir:
            return await measure(args, dsn, services, qrs, device, echo_port, Path(workdir))


async def measure(
    args, dsn: str, services: ServiceProcesses, qrs: list[str], device: dict, echo_port: int, work: Path
) -> dict:
    token = device["token"]
    header = [f"authorization: Bearer {token}"]
    many, one, batches, one_batch = (work / f for f in ("many.bin", "one.bin", "batches.bin", "one_batch.bin"))
    grpcload.write_bodies(many, (vpb.VerifyRequest(qr=qr) for qr in qrs))
    grpcload.write_bodies(one, [vpb.VerifyRequest(qr=qrs[0])])
    batch_of = [qrs[i : i + BATCH_SIZE] for i in range(0, len(qrs) - BATCH_SIZE + 1, BATCH_SIZE)]
    scans = [[vpb.VerifyRequest(qr=q) for q in b] for b in batch_of]
    grpcload.write_bodies(batches, (vpb.VerifyBatchRequest(scans=b) for b in scans))
    grpcload.write_bodies(one_batch, [vpb.VerifyBatchRequest(scans=scans[0])])
    json_bodies = work / "many.jsonl"
    httpload.write_bodies(json_bodies, (json.dumps({"qr": qr}, separators=(",", ":")).encode() for qr in qrs))

    async def fresh_verify() -> int:
        """A new verify_svc, serving on all its processes; checks one scan answers VALID from the cache."""
        port = services.start("verify_svc", SERVER_PROCESSES=str(args.processes))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await verify_service_pb2_grpc.VerifyServiceStub(channel).Verify(
                vpb.VerifyRequest(qr=qrs[-1]), metadata=bearer(token), wait_for_ready=True, timeout=10
            )
        if answer.verdict != verdict_pb2.VERDICT_VALID or answer.status_source != verdict_pb2.STATUS_SOURCE_CACHE:
            raise RuntimeError(f"the last certificate does not verify VALID from the cache: {answer}")
        return port

    def stop_verify() -> None:
        proc = services.processes.pop()
        proc.terminate()
        proc.wait(30)

    def load(port: int, path: str, bodies: Path, *, first_scans: bool = False, **options) -> dict:
        options = {"connections": args.clients, "streams": args.streams, "duration": args.duration,
                   "warmup": args.warmup, **options}  # fmt: skip
        result = grpcload.run(port, path, bodies, headers=header, **options)
        if first_scans and result["repeats"]:
            raise RuntimeError(
                f"the run sent {result['sent_total']} calls but has only {result['bodies']} different bodies: "
                "some QR was scanned twice; raise --results or shorten --duration"
            )
        return result

    async def in_thread(port: int, path: str, bodies: Path, **options) -> dict:
        return await asyncio.to_thread(functools.partial(load, port, path, bodies, **options))

    async def gateway_figures() -> dict:
        """4. The HTTP/JSON gateway: the same paced load straight and through it, then its own maximum."""

        def http_load(port: int, **options) -> dict:
            options = {"connections": args.clients, "duration": args.duration, "warmup": args.warmup, **options}
            result = httpload.run(port, "/v1/verify", json_bodies, headers=header, **options)
            if result["repeats"]:
                raise RuntimeError("the gateway run scanned some QR twice; raise --results or shorten --duration")
            return result

        direct_runs, gateway_runs = [], []
        for round_number in range(1, args.rounds + 1):
            port = await fresh_verify()
            direct = await in_thread(port, VERIFY_PATH, many, streams=1, rate=args.gateway_rate, first_scans=True)
            show(f"round {round_number} direct gRPC at {args.gateway_rate}/s", direct, token)
            direct_runs.append(direct)
            stop_verify()
            port = await fresh_verify()
            gateway, gateway_port = start_gateway(services, port)
            try:
                through = await asyncio.to_thread(http_load, gateway_port, rate=args.gateway_rate)
            finally:
                gateway.terminate()
                gateway.wait(30)
            show(f"round {round_number} through the gateway at {args.gateway_rate}/s", through, token)
            gateway_runs.append(through)
            stop_verify()
        # The gateway's own cost without verify_svc's variance: the echo server straight and through it.
        echo_direct, echo_through = [], []
        for round_number in range(1, args.rounds + 1):
            r = await in_thread(echo_port, VERIFY_PATH, many, streams=1, rate=args.gateway_rate)
            show(f"round {round_number} echo straight at {args.gateway_rate}/s", r, token)
            echo_direct.append(r)
            gateway, gateway_port = start_gateway(services, echo_port)
            try:
                r = await asyncio.to_thread(http_load, gateway_port, rate=args.gateway_rate)
            finally:
                gateway.terminate()
                gateway.wait(30)
            show(f"round {round_number} echo through the gateway at {args.gateway_rate}/s", r, token)
            echo_through.append(r)
        port = await fresh_verify()
        gateway, gateway_port = start_gateway(services, port)
        try:
            gateway_max = await asyncio.to_thread(http_load, gateway_port)
        finally:
            gateway.terminate()
            gateway.wait(30)
        show(f"through the gateway, closed loop ({args.clients} connections)", gateway_max, token)
        stop_verify()
        direct_p99 = statistics.median(r["p99_ms"] for r in direct_runs)
        gateway_p99 = statistics.median(r["p99_ms"] for r in gateway_runs)
        print(
            f"gateway at {args.gateway_rate}/s: p99 {gateway_p99:.2f} ms against {direct_p99:.2f} ms straight "
            f"(median of {args.rounds}); adds {gateway_p99 - direct_p99:.2f} ms; "
            f"closed loop {gateway_max['rps']:.0f}/s",
            flush=True,
        )

        return {
            "gateway_rate": args.gateway_rate,
            "gateway_p50_ms": statistics.median(r["p50_ms"] for r in gateway_runs),
            "gateway_p99_ms": gateway_p99,
            "direct_p50_ms_at_gateway_rate": statistics.median(r["p50_ms"] for r in direct_runs),
            "direct_p99_ms_at_gateway_rate": direct_p99,
            "gateway_added_p99_ms": round(gateway_p99 - direct_p99, 3),
            "gateway_p99_ms_runs": [r["p99_ms"] for r in gateway_runs],
            "direct_p99_ms_runs_at_gateway_rate": [r["p99_ms"] for r in direct_runs],
            "gateway_max_rps": round(gateway_max["rps"]),
            "echo_p99_ms_at_gateway_rate": statistics.median(r["p99_ms"] for r in echo_direct),
            "echo_through_gateway_p99_ms": statistics.median(r["p99_ms"] for r in echo_through),
            "echo_through_gateway_p50_ms": statistics.median(r["p50_ms"] for r in echo_through),
            "echo_p50_ms_at_gateway_rate": statistics.median(r["p50_ms"] for r in echo_direct),
            "gateway_processes": 1,
        }

    if args.gateway_only:
        return {**await gateway_figures(), "verify_processes": args.processes, "certificates": len(qrs)}

    # 0. The calls get real VALID verdicts: verify_svc's own counts (flushed every 5 s) grow by each call.
    port = await fresh_verify()
    before = await wait_for_valid_count(dsn, device["id"], 1)
    checked = await in_thread(port, VERIFY_PATH, many, duration=2, warmup=0, first_scans=True)
    completed = checked["requests"] + checked["warmup_calls"]
    counted = await wait_for_valid_count(dsn, device["id"], before + completed)
    if counted - before < completed:
        raise RuntimeError(f"grpcload completed {completed} calls but verify_svc counted {counted - before} VALID")
    print(f"check: {completed} grpcload calls, each a different QR, all counted VALID by verify_svc", flush=True)
    stop_verify()

    # 1. Max throughput: first scans, the repeat path, the echo server; median of the rounds.
    rows: dict[str, list[dict]] = {"first": [], "repeat": [], "echo": []}
    for round_number in range(1, args.rounds + 1):
        port = await fresh_verify()
        for name, target, bodies in (("first", port, many), ("repeat", port, one), ("echo", echo_port, many)):
            r = await in_thread(target, VERIFY_PATH, bodies, first_scans=name == "first")
            rows[name].append(r)
            show(f"round {round_number} {name}", r, token)
        stop_verify()
    rps = {name: statistics.median(r["rps"] for r in runs) for name, runs in rows.items()}
    print(
        f"median of {args.rounds}: first scans {rps['first']:.0f} calls/s, repeat scans {rps['repeat']:.0f}, "
        f"echo {rps['echo']:.0f}; ratios {rps['first'] / rps['echo']:.3f} and {rps['repeat'] / rps['echo']:.3f}",
        flush=True,
    )

    # 2. Latency at half the first-scan max rate, one stream per connection; echo at the same rate.
    rate = round(rps["first"] / 2)
    port = await fresh_verify()
    half = await in_thread(port, VERIFY_PATH, many, streams=1, rate=rate, first_scans=True)
    show(f"first scans at {rate}/s ({args.clients} connections x 1 stream)", half, token)
    stop_verify()
    echo_half = await in_thread(echo_port, VERIFY_PATH, many, streams=1, rate=rate)
    show(f"echo at {rate}/s", echo_half, token)
    port = await fresh_verify()
    repeat_half = await in_thread(port, VERIFY_PATH, one, streams=1, rate=round(rps["repeat"] / 2))
    show(f"repeat scans at {round(rps['repeat'] / 2)}/s", repeat_half, token)
    stop_verify()

    # 3. VerifyBatch: 50 different QRs per call, never repeated in the run; then one batch repeated.
    port = await fresh_verify()
    batch_options = {"streams": args.batch_streams, "duration": args.batch_duration, "warmup": 1}
    batch = await in_thread(port, BATCH_PATH, batches, first_scans=True, **batch_options)
    show("VerifyBatch, 50 different QRs per call", batch, token)
    repeat_batch = await in_thread(port, BATCH_PATH, one_batch, **batch_options)
    show("VerifyBatch, one batch repeated", repeat_batch, token)
    stop_verify()

    gateway = await gateway_figures()

    return {
        "verify_rps": round(rps["first"]),
        "echo_rps": round(rps["echo"]),
        "ratio": round(rps["first"] / rps["echo"], 3),
        "verify_p99_ms": half["p99_ms"],
        "verify_p50_ms": half["p50_ms"],
        "half_load_rps": half["rps"],
        "echo_half_load_p99_ms": echo_half["p99_ms"],
        "batch_scans_per_s": round(batch["rps"] * BATCH_SIZE),
        "repeat_verify_rps": round(rps["repeat"]),
        "repeat_ratio": round(rps["repeat"] / rps["echo"], 3),
        "repeat_verify_p99_ms": repeat_half["p99_ms"],
        "repeat_batch_scans_per_s": round(repeat_batch["rps"] * BATCH_SIZE),
        **{f"{name}_rps_runs": [round(r["rps"]) for r in runs] for name, runs in rows.items()},
        **{f"{name}_max_p99_ms_runs": [r["p99_ms"] for r in runs] for name, runs in rows.items()},
        **gateway,
        "verify_processes": args.processes,
        "echo_processes": args.processes,
        "certificates": len(qrs),
        "grpcio": grpc.__version__,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=60_000, help="certificates issued beforehand (distinct QRs)")
    parser.add_argument("--processes", type=int, default=2, help="verify_svc SERVER_PROCESSES = echo processes")
    parser.add_argument("--clients", type=int, default=8, help="connections")
    parser.add_argument("--streams", type=int, default=16, help="concurrent calls per connection")
    parser.add_argument("--batch-streams", type=int, default=2, help="concurrent VerifyBatch calls per connection")
    parser.add_argument("--duration", type=float, default=6, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds before each run")
    parser.add_argument("--batch-duration", type=float, default=3, help="seconds measured per VerifyBatch run")
    parser.add_argument("--rounds", type=int, default=3, help="max-throughput rounds (median kept)")
    parser.add_argument("--gateway-only", action="store_true", help="measure only the HTTP/JSON gateway rows")
    parser.add_argument(
        "--gateway-rate", type=int, default=500, help="paced Verify calls/s, straight and via the gateway"
    )
    arguments = parser.parse_args()
    if arguments.results < 2 * BATCH_SIZE:
        parser.error(f"--results must be at least {2 * BATCH_SIZE}")
    figures = asyncio.run(main(arguments))
    print(json.dumps({"bench": "verify", **figures, **{k: v for k, v in vars(arguments).items() if k != "processes"},
                      "machine": MACHINE}))  # fmt: skip
