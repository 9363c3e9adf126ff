"""`make bench-intake`: RecordResults throughput of the real result_svc against the local Postgres.

Starts `python -m services.result_svc` as its own process on a fresh database of the Postgres at
DATABASE_URL (default: the local one), registers the samples beforehand, then records their results
in batches of 100 and of 500 with a few calls in flight, each batch writing its results, sample
states, outbox events, audit rows and idempotency row in one transaction. Prints results per second
and p50/p99 latency per batch call for each batch size; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MACHINE, bench_platform, percentile  # noqa: E402
from services.common.auth import Role  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2 as pb  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.type.v1 import testing_pb2 as t  # noqa: E402
from tests.conftest import bearer, make_principal  # noqa: E402
from tests.result_svc.helpers import result, rid, sample  # noqa: E402


async def register_all(stub, auth, lab_id: str, count: int, offset: int) -> list[str]:
    barcodes = []
    for start in range(0, count, 1000):
        items = [sample(f"B{offset + i}", lab_id, offset + i) for i in range(start, min(count, start + 1000))]
        reply = await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=auth)
        assert reply.created_count == len(items), reply.results[0]
        barcodes += [i.sample_barcode for i in items]
    return barcodes


async def record_all(stub, auth, barcodes: list[str], batch: int, concurrency: int) -> tuple[float, list[float]]:
    batches = [barcodes[i : i + batch] for i in range(0, len(barcodes), batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    latencies: list[float] = []

    async def worker():
        while not queue.empty():
            chunk = queue.get_nowait()
            request = pb.RecordResultsRequest(
                request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=b) for b in chunk]
            )
            started = time.perf_counter()
            reply = await stub.RecordResults(request, metadata=auth, timeout=60)
            latencies.append(time.perf_counter() - started)
            assert reply.recorded_count == len(chunk), reply.results[0]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def main(args) -> dict:
    async with bench_platform("intake", DB_POOL_MAX=str(max(4, args.concurrency * 2))) as (dsn, _, services):
        unit = await make_principal(dsn, Role.SAMPLER)
        lab = await make_principal(dsn, Role.LAB)
        port = services.start("result_svc")
        figures = {}
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            offset = 0
            for batch in (100, 500):
                total = args.results
                barcodes = await register_all(stub, bearer(unit["token"]), lab["id"], total, offset)
                offset += total
                elapsed, latencies = await record_all(stub, bearer(lab["token"]), barcodes, batch, args.concurrency)
                figures[batch] = {
                    "results": total,
                    "seconds": round(elapsed, 3),
                    "results_per_s": round(total / elapsed),
                    "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
                    "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                    "mean_ms": round(statistics.mean(latencies) * 1000, 1),
                    "calls": len(latencies),
                }
                f = figures[batch]
                print(
                    f"batch {batch:4d}: {f['results']} results in {f['seconds']} s = {f['results_per_s']} "
                    f"results/s; per call p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms ({f['calls']} calls, "
                    f"{args.concurrency} in flight)",
                    flush=True,
                )
        return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=60_000, help="results recorded per batch size")
    parser.add_argument("--concurrency", type=int, default=4, help="RecordResults calls in flight")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    best = figures[500]
    print(
        json.dumps(
            {
                "bench": "intake",
                "results_per_s": best["results_per_s"],
                "p99_ms": best["p99_ms"],
                "batch_size": 500,
                "batch_100": figures[100],
                "batch_500": figures[500],
                "concurrency": arguments.concurrency,
                "machine": MACHINE,
            }
        )
    )
