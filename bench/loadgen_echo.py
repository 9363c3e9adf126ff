"""grpcload against h2load on the bare echo server: is the many-bodies load generator fast enough?

Starts bench/echo_server.py the way bench/verify.py does (one process) and drives it in turns with
h2load (one pre-framed body, as bench/verify.py runs it) and with grpcload (bench/loadgen/grpcload.c)
cycling through --bodies different VerifyRequests, then with grpcload on h2load's single body, at the
same connections, streams, duration and warm-up, --rounds times each. Prints each run with the client's
CPU time and ends with one JSON line.

    python bench/loadgen_echo.py [--clients 8] [--streams 16] [--duration 10] [--warmup 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import grpcload  # noqa: E402
from bench.common import MACHINE, ServiceProcesses  # noqa: E402
from bench.h2load import H2Load, grpc_frame  # noqa: E402
from bench.verify import VERIFY_PATH, start_echo  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb  # noqa: E402


def fake_qr(i: int) -> str:
    """A QR-sized string (an HC1 certificate is about 400 characters of Base45), different for each i."""
    return f"HC1:6BF{i:010d}" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 $%*+-./:"[i % 45] * 380


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(args) -> dict:
    grpcload.build()
    services = ServiceProcesses({})
    port = start_echo(services)
    results: dict[str, list[dict]] = {"h2load": [], "grpcload_many": [], "grpcload_one": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_loadgen_") as workdir:
            work = Path(workdir)
            many, one = work / "many.bin", work / "one.bin"
            grpcload.write_bodies(many, (vpb.VerifyRequest(qr=fake_qr(i)) for i in range(args.bodies)))
            single = vpb.VerifyRequest(qr=fake_qr(0))
            one.write_bytes(grpc_frame(single))
            h2 = H2Load("unused", work, args.clients, args.streams)
            for round_number in range(1, args.rounds + 1):
                for name in results:
                    cpu = children_cpu()
                    if name == "h2load":
                        r = h2.run(port, VERIFY_PATH, grpc_frame(single), duration=args.duration, warmup=args.warmup)
                        row = {"rps": r.rps, "requests": r.done, "p50_ms": r.p50, "p99_ms": r.p99, "command": r.command}
                    else:
                        row = grpcload.run(
                            port,
                            VERIFY_PATH,
                            many if name == "grpcload_many" else one,
                            connections=args.clients,
                            streams=args.streams,
                            duration=args.duration,
                            warmup=args.warmup,
                        )
                    row["client_cpu_s"] = children_cpu() - cpu
                    results[name].append(row)
                    extra = (
                        f", {row['distinct_sent']} of {row['bodies']} bodies sent ({row['sent_total']} calls)"
                        if "bodies" in row
                        else ""
                    )
                    print(
                        f"round {round_number} {name}: {row['rps']:.0f} calls/s, p50 {row['p50_ms']:.2f} ms, "
                        f"p99 {row['p99_ms']:.2f} ms, client CPU {row['client_cpu_s']:.1f} s "
                        f"over {args.duration + args.warmup:.0f} s{extra}\n  {row['command']}",
                        flush=True,
                    )
    finally:
        services.stop()
    return (
        {f"{name}_rps": round(statistics.median(r["rps"] for r in rows)) for name, rows in results.items()}
        | {f"{name}_rps_runs": [round(r["rps"]) for r in rows] for name, rows in results.items()}
        | {f"{name}_client_cpu_s": [round(r["client_cpu_s"], 1) for r in rows] for name, rows in results.items()}
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bodies", type=int, default=20_000, help="different VerifyRequests grpcload cycles through")
    arguments = parser.parse_args()
    figures = main(arguments)
    print(
        json.dumps(
            {
                "bench": "loadgen_echo",
                **figures,
                "clients": arguments.clients,
                "streams": arguments.streams,
                "duration_s": arguments.duration,
                "bodies": arguments.bodies,
                "machine": MACHINE,
            }
        )
    )
