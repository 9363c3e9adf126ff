"""`make bench-feed`: certificates signed and delivered per second, and commit-to-consumer lag.

Starts the real result_svc and publish_svc as their own processes on a fresh database of the Postgres
at DATABASE_URL (default: the local one) with an active ES256 signing key, and holds a partner's
StreamResultEvents stream open from position 1. Three phases:

1. throughput: the results are recorded (committed, in the outbox) before publish_svc starts; then
   publish_svc starts and its relay signs (HCERT, ES256) and publishes the whole backlog while the
   consumer streams it. events/s = results delivered / (last delivery - publish_svc listening).
   Intake's own throughput is `make bench-intake`'s figure.
2. pipeline: intake records results as fast as it takes them while the relay signs and the stream
   delivers: the end-to-end rate when everything shares the machine.
3. lag: with everything running, results recorded at a steady rate (default 1,000/s, in batches of 50);
   lag = the moment the consumer receives an event - the moment RecordResults acknowledged
   (committed) its result.

Prints both and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    MACHINE,
    ServiceProcesses,
    bench_platform,
    percentile,
)
from services.common.auth import Role  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.type.v1 import testing_pb2 as t  # noqa: E402
from tests.conftest import bearer, make_principal  # noqa: E402
from tests.publish_svc.conftest import activate_new_key  # noqa: E402
from tests.result_svc.helpers import result, rid, sample  # noqa: E402


class Consumer:
    """Reads the feed and notes when each result's event arrived."""

    def __init__(self, stub, token: str):
        self.stub, self.token = stub, token
        self.arrived: dict[str, float] = {}
        self.positions: list[int] = []
        self.certificates = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        call = self.stub.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(self.token), wait_for_ready=True
        )
        async for message in call:
            now = time.time()
            for event in message.events:
                self.positions.append(event.position)
                if event.HasField("result"):  # SAMPLE_REGISTERED events ("result pending") carry none
                    self.arrived[event.result.result_id] = now
                    self.certificates += bool(event.certificate.qr)
            self.changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def register(stub, auth, lab_id: str, count: int, offset: int) -> list[str]:
    barcodes = []
    for start in range(0, count, 1000):
        items = [sample(f"F{offset + i}", lab_id, offset + i) for i in range(start, min(count, start + 1000))]
        reply = await stub.RegisterSamples(rpb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=auth)
        assert reply.created_count == len(items)
        barcodes += [i.sample_barcode for i in items]
    return barcodes


async def record(stub, auth, barcodes: list[str], acked: dict[str, float]) -> None:
    reply = await stub.RecordResults(
        rpb.RecordResultsRequest(
            request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=b) for b in barcodes]
        ),
        metadata=auth,
        timeout=60,
    )
    now = time.time()
    for item in reply.results:
        for s in item.samples:
            acked[s.result_id] = now


async def main(args) -> dict:
    async with bench_platform("feed", RELAY_POLL_SECONDS="0.05") as (dsn, secrets, services):
        return await run(args, dsn, secrets, services)


async def run(args, dsn: str, secrets: dict, services: ServiceProcesses) -> dict:
    await activate_new_key(dsn, secrets, "ES256")
    unit, lab = await make_principal(dsn, Role.SAMPLER), await make_principal(dsn, Role.LAB)
    partner = await make_principal(dsn, Role.PARTNER, personal_data_access=True)  # receives the QR codes
    intake_channel = grpc.aio.insecure_channel(f"127.0.0.1:{services.start('result_svc')}")
    intake = result_service_pb2_grpc.ResultServiceStub(intake_channel)
    unit_auth, lab_auth = bearer(unit["token"]), bearer(lab["token"])

    # Phase 1: throughput of signing and delivery, on a backlog committed beforehand.
    barcodes = await register(intake, unit_auth, lab["id"], args.results, 0)
    acked: dict[str, float] = {}
    queue = [barcodes[i : i + 100] for i in range(0, len(barcodes), 100)]

    async def writer():
        while queue:
            await record(intake, lab_auth, queue.pop(), acked)

    await asyncio.gather(*(writer() for _ in range(args.writers)))
    publish_port = services.start("publish_svc")
    started = time.time()
    feed_channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{publish_port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    consumer = Consumer(publish_service_pb2_grpc.PublishServiceStub(feed_channel), partner["token"])
    consuming = asyncio.create_task(consumer.run())
    await consumer.wait_for(args.results, 300)
    elapsed = max(consumer.arrived.values()) - started
    events_per_s = args.results / elapsed
    print(
        f"throughput: a backlog of {args.results} committed results signed and delivered in {elapsed:.2f} s = "
        f"{events_per_s:.0f} certificates/s ({consumer.certificates} certificates on the stream)",
        flush=True,
    )

    # Phase 2: the whole pipeline at once: intake as fast as it goes while the relay signs and delivers.
    barcodes = await register(intake, unit_auth, lab["id"], args.results, 20_000_000)
    queue = [barcodes[i : i + 100] for i in range(0, len(barcodes), 100)]
    started = time.time()
    await asyncio.gather(*(writer() for _ in range(args.writers)))
    await consumer.wait_for(2 * args.results, 300)
    pipeline_per_s = args.results / (max(consumer.arrived.values()) - started)
    print(
        f"pipeline: {args.results} results recorded, signed and delivered at once = {pipeline_per_s:.0f}/s "
        "(intake, relay, Postgres and this client share the machine)",
        flush=True,
    )

    # Phase 3: lag at a steady rate.
    barcodes = await register(intake, unit_auth, lab["id"], args.lag_results, 10_000_000)
    lag_acked: dict[str, float] = {}
    batch = 50
    interval = batch / args.rate
    tasks = []
    next_at = time.monotonic()
    for i in range(0, len(barcodes), batch):
        tasks.append(asyncio.create_task(record(intake, lab_auth, barcodes[i : i + batch], lag_acked)))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*tasks)
    await consumer.wait_for(2 * args.results + args.lag_results, 120)
    lags = [(consumer.arrived[r] - a) * 1000 for r, a in lag_acked.items()]
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    print(
        f"lag at {args.rate}/s: {len(lags)} results, commit-to-consumer p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(lags):.1f} ms",
        flush=True,
    )
    positions = consumer.positions
    assert positions == list(range(1, len(positions) + 1)), "the feed had a gap or a repeat"
    consuming.cancel()
    await intake_channel.close()
    await feed_channel.close()
    return {
        "events_per_s": round(events_per_s),
        "pipeline_events_per_s": round(pipeline_per_s),
        "lag_p50_ms": round(p50, 1),
        "lag_p99_ms": round(p99, 1),
        "lag_rate_per_s": args.rate,
        "results": args.results,
        "lag_results": args.lag_results,
        "writers": args.writers,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=20_000, help="results in the throughput phase")
    parser.add_argument("--writers", type=int, default=3, help="RecordResults calls in flight (throughput phase)")
    parser.add_argument("--rate", type=int, default=1000, help="results per second in the lag phase")
    parser.add_argument("--lag-results", type=int, default=10_000, help="results in the lag phase")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(json.dumps({"bench": "feed", **figures, "machine": MACHINE}))
