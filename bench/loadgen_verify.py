"""The real verify_svc under grpcload: a different QR on every call against one QR repeated.

Sets up as bench/verify.py does (a scratch database, an active ES256 key, --results results registered,
recorded and released, their certificates read from the feed so the relay has written their statuses
to Redis, a CHECKPOINT device of province "24", the rate limiter far above the load), then per round:

- a fresh verify_svc (SERVER_PROCESSES=--processes, so no per-QR memory survives from an earlier
  round), driven by grpcload cycling through all the certificates: every call a different QR, as long
  as the run sends fewer calls than --results ("distinct_sent" and "repeats" in each row say so);
- the same verify_svc with one QR repeated (grpcload given one body: the repeat-scan path);
- the echo server with as many processes as verify_svc (SO_REUSEPORT on one port), the same client.

Before the rounds a short counted run checks that the calls get real VALID verdicts: verify_svc's
verdict counts must grow by at least the number of calls grpcload completed. Ends with one JSON line.

    python bench/loadgen_verify.py [--results 20000] [--processes 2] [--duration 8] [--warmup 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import grpcload  # noqa: E402
from bench.common import MACHINE, ROOT, bench_platform  # noqa: E402
from bench.verify import VERIFY_PATH, released_qrs, start_echo, valid_count, wait_for_valid_count  # noqa: E402
from services.gen.covidtest.type.v1 import verdict_pb2  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc  # noqa: E402
from tests.conftest import bearer  # noqa: E402


async def main(args) -> dict:
    grpcload.build()
    async with bench_platform("loadgen", RELAY_POLL_SECONDS="0.05", SCANS_PER_MINUTE=str(1_000_000_000)) as (
        dsn,
        secrets,
        services,
    ):
        qrs, device = await released_qrs(dsn, secrets, services, args.results, batch=500, timeout=600)

        echo_port = start_echo(services)
        for _ in range(args.processes - 1):  # more echo processes on the same port (SO_REUSEPORT)
            services.processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(echo_port)],
                    cwd=ROOT,
                    env=services.env,
                )
            )
        await asyncio.sleep(2)
        header = [f"authorization: Bearer {device['token']}"]
        rows: dict[str, list[dict]] = {"distinct": [], "repeat": [], "echo": []}
        with tempfile.TemporaryDirectory(prefix="bench_loadgen_") as workdir:
            many, one = Path(workdir) / "many.bin", Path(workdir) / "one.bin"
            grpcload.write_bodies(many, (vpb.VerifyRequest(qr=qr) for qr in qrs))
            grpcload.write_bodies(one, [vpb.VerifyRequest(qr=qrs[0])])

            async def fresh_verify() -> int:
                port = services.start("verify_svc", SERVER_PROCESSES=str(args.processes))
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = verify_service_pb2_grpc.VerifyServiceStub(channel)
                    answer = await stub.Verify(
                        vpb.VerifyRequest(qr=qrs[-1]), metadata=bearer(device["token"]), wait_for_ready=True, timeout=10
                    )
                if answer.verdict != verdict_pb2.VERDICT_VALID:
                    raise RuntimeError(f"the last certificate does not verify VALID: {answer}")
                return port

            def stop_verify() -> None:
                proc = services.processes.pop()
                proc.terminate()
                proc.wait(30)

            def load(port, bodies, **kw):
                return grpcload.run(
                    port,
                    VERIFY_PATH,
                    bodies,
                    connections=args.clients,
                    streams=kw.pop("streams", args.streams),
                    duration=kw.pop("duration", args.duration),
                    warmup=kw.pop("warmup", args.warmup),
                    headers=header,
                    **kw,
                )

            # Check: the calls get real VALID verdicts (verify_svc's own counts, flushed every 5 s).
            port = await fresh_verify()
            before = await wait_for_valid_count(dsn, device["id"], 1)
            checked = await asyncio.to_thread(load, port, many, duration=2, warmup=0)
            completed = checked["requests"] + checked["warmup_calls"]
            counted = await wait_for_valid_count(dsn, device["id"], before + completed)
            if counted - before < completed:
                raise RuntimeError(
                    f"grpcload completed {completed} calls but verify_svc counted {counted - before} VALID"
                )
            print(
                f"check: {completed} grpcload calls completed, verify_svc counted {counted - before} VALID", flush=True
            )
            stop_verify()

            for round_number in range(1, args.rounds + 1):
                port = await fresh_verify()
                for name, target, bodies in (
                    ("distinct", port, many),
                    ("repeat", port, one),
                    ("echo", echo_port, many),
                ):
                    r = await asyncio.to_thread(load, target, bodies)
                    rows[name].append(r)
                    print(
                        f"round {round_number} {name}: {r['rps']:.0f} calls/s, p50 {r['p50_ms']:.2f} ms, "
                        f"p99 {r['p99_ms']:.2f} ms, {r['distinct_sent']} of {r['bodies']} bodies sent in "
                        f"{r['sent_total']} calls (repeats: {r['repeats']})\n  "
                        + r["command"].replace(device["token"], "$TOKEN"),
                        flush=True,
                    )
                stop_verify()

            # Latency at half the distinct-QR rate, one stream per connection, on a fresh verify_svc.
            half_rate = round(statistics.median(r["rps"] for r in rows["distinct"]) / 2)
            port = await fresh_verify()
            half = await asyncio.to_thread(load, port, many, streams=1, rate=half_rate)
            print(
                f"distinct QRs at {half_rate}/s ({args.clients} connections x 1 stream): {half['rps']:.0f} calls/s, "
                f"p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms, {half['late']} late, "
                f"{half['skipped_after_warmup']} skipped after warm-up, "
                f"repeats: {half['repeats']}",
                flush=True,
            )
            stop_verify()
        after = await valid_count(dsn, device["id"])
    med = {name: statistics.median(r["rps"] for r in rs) for name, rs in rows.items()}
    return {
        "verify_distinct_rps": round(med["distinct"]),
        "verify_repeat_rps": round(med["repeat"]),
        "echo_rps": round(med["echo"]),
        "ratio_distinct": round(med["distinct"] / med["echo"], 3),
        "ratio_repeat": round(med["repeat"] / med["echo"], 3),
        "distinct_p99_ms_half_load": half["p99_ms"],
        "distinct_p50_ms_half_load": half["p50_ms"],
        "half_load_rps": half["rps"],
        "distinct_runs_repeated_a_qr": [r["repeats"] for r in rows["distinct"]],
        **{f"{name}_rps_runs": [round(r["rps"]) for r in rs] for name, rs in rows.items()},
        **{f"{name}_p99_ms_runs": [r["p99_ms"] for r in rs] for name, rs in rows.items()},
        "valid_counted_total": int(after),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2, help="verify_svc SERVER_PROCESSES and echo processes")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(json.dumps({"bench": "loadgen_verify", **figures, **vars(arguments), "machine": MACHINE}))
