"""`make bench-capacity`: per-replica figures of the production topology (`make run-ha`'s), for
docs/capacity.md.

Starts tools/topology.py's topology fresh under /tmp (Postgres primary + synchronous standby + async read
replica behind the rw/ro proxies; Redis master + replica + Sentinels + HAProxy; two replicas of each
service with the production settings, SERVER_PROCESSES 1 as deploy/base/config/common.env; no gateway).
One change: verify_svc's SCANS_PER_MINUTE is lifted, because one load generator stands for thousands of
checkpoint devices (each far below the limit in production). Then, on the services' own replica ports:

1. pipeline: samples registered and their results recorded at a steady --pipeline-rate (batches of 50,
   as a lab's software uploads) for --pipeline-seconds, while a partner streams the feed; until every
   result's RELEASED event (with its certificate) arrived. Gives each component's CPU per sample (intake,
   relay, signing, feed, replication: the whole path of one test) and the commit-to-consumer lag;
2. intake at its maximum: --lab-clients labs each registering and recording batches of 100 in a closed
   loop, first all on result_svc-0, then spread over both replicas; samples/s and the cores each
   component used (the relay keeps publishing meanwhile, as in production);
3. the relay draining the backlog intake left: events and certificates/s of the one leader;
4. a partner reading the whole feed from position 1 (a reconnect after a long outage): events/s served
   by one publish_svc replica;
5. Verify, first scans only (every call a different certificate's QR, each QR sent once in the whole
   benchmark, so no replica has seen it): grpcload (bench/loadgen/grpcload.c) closed loop on verify_svc-0,
   then on both replicas at once (one grpcload each), then paced at half one replica's maximum for the
   latency. Checks first that each replica answers VALID from the cache, and after that verify_svc
   counted every call VALID. Last, the paced run again right after Redis is emptied as the failover hook
   empties a new master: the misses read the read replica until the relay has refilled Redis.

Each phase records the CPU seconds every component spent (bench/topology_cpu.py): on this machine all of
them share the same cores, so a throughput figure is a floor; CPU per operation is what carries over to
pods with cores of their own. Ends with one JSON line.

    python bench/capacity.py [--certificates 60000] [--pipeline-rate 200] [--verify-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import grpcload  # noqa: E402
from bench.common import MACHINE, percentile  # noqa: E402
from bench.feed import Consumer, record, register  # noqa: E402
from bench.topology_cpu import CpuMeter, own_cpu  # noqa: E402
from bench.verify import VERIFY_PATH, wait_for_valid_count  # noqa: E402
from services.common.db import create_pool  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.result.v1 import result_service_pb2_grpc  # noqa: E402
from services.gen.covidtest.type.v1 import verdict_pb2  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc  # noqa: E402
from tests.conftest import bearer  # noqa: E402
from tests.topology.load import Callers, drill_callers, poll  # noqa: E402
from tools import localstack  # noqa: E402
from tools.topology import REPLICAS, Topology  # noqa: E402

FEED_CHANNEL = [("grpc.max_receive_message_length", 64 << 20)]
RIG = ("proxy:", "bench", "loadgen")  # what stands in for Kubernetes and the clients: reported, not modelled


@dataclass
class Phase:
    """One measured phase: its operations, wall time and the CPU seconds of every component."""

    name: str
    operations: int
    seconds: float
    cpu: dict[str, float]

    def cores(self) -> dict[str, float]:
        """Cores each component kept busy on average."""
        return {k: round(v / self.seconds, 3) for k, v in sorted(self.cpu.items()) if v > 0}

    def cpu_ms_per_operation(self) -> dict[str, float]:
        return {k: round(1000 * v / self.operations, 4) for k, v in sorted(self.cpu.items()) if v > 0}

    def report(self) -> dict:
        busy = sorted(self.cores().items(), key=lambda kv: -kv[1])
        print(
            f"{self.name}: {self.operations} in {self.seconds:.2f} s = {self.operations / self.seconds:.0f}/s; "
            "cores: " + ", ".join(f"{k} {v:.2f}" for k, v in busy if v >= 0.01),
            flush=True,
        )
        return {
            "operations": self.operations,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.operations / self.seconds, 1),
            "cores": self.cores(),
            "cpu_ms_per_operation": self.cpu_ms_per_operation(),
        }


class Stopwatch:
    """CPU of every component and wall time from construction to `phase()`."""

    def __init__(self, meter: CpuMeter):
        self.meter = meter
        self.start = time.monotonic()
        self.cpu = meter.sample()
        self.own = own_cpu()

    def phase(self, name: str, operations: int) -> Phase:
        seconds = time.monotonic() - self.start
        spent = self.meter.sample().since(self.cpu)
        own = own_cpu()
        spent.update({k: round(own[k] - self.own[k], 3) for k in own})
        return Phase(name, operations, seconds, spent)


class Labs:
    """Lab software uploading through result_svc: registers samples (as the sampling unit) and records
    their negative results (as the lab), in batches; every barcode and person new."""

    def __init__(self, callers: Callers):
        self.callers = callers
        self.serial = itertools.count(0, 1000)
        self.acknowledged: dict[str, float] = {}  # result id → when RecordResults answered

    async def upload(self, channel: grpc.aio.Channel, count: int) -> int:
        stub = result_service_pb2_grpc.ResultServiceStub(channel)
        barcodes = await register(
            stub, bearer(self.callers.unit["token"]), self.callers.lab["id"], count, next(self.serial)
        )
        await record(stub, bearer(self.callers.lab["token"]), barcodes, self.acknowledged)
        return count

    async def closed_loop(
        self, channels: list[grpc.aio.Channel], clients: int, seconds: float, batch: int = 100
    ) -> int:
        """`clients` labs uploading `batch` samples at a time as fast as answered, spread over `channels`."""
        end = time.monotonic() + seconds
        done = 0

        async def lab(channel: grpc.aio.Channel) -> None:
            nonlocal done
            while time.monotonic() < end:
                done += await self.upload(channel, batch)

        await asyncio.gather(*(lab(channels[i % len(channels)]) for i in range(clients)))
        return done

    async def paced(self, channel: grpc.aio.Channel, rate: float, seconds: float, batch: int = 50) -> int:
        """`rate` samples a second in batches of `batch`, started on schedule (not after the previous one)."""
        interval, calls = batch / rate, []
        next_at = time.monotonic()
        for _ in range(int(seconds * rate / batch)):
            calls.append(asyncio.create_task(self.upload(channel, batch)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing, not synchronisation
        return sum(await asyncio.gather(*calls))


async def read_feed(address: str, token: str, head: int) -> tuple[list[str], int]:
    """A partner's stream from position 1 to `head`: the certificates' QR texts and the events read."""
    qrs: list[str] = []
    events = 0
    async with grpc.aio.insecure_channel(address, options=FEED_CHANNEL) as channel:
        call = publish_service_pb2_grpc.PublishServiceStub(channel).StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(token)
        )
        async for message in call:
            for event in message.events:
                events += 1
                if event.certificate.qr:
                    qrs.append(event.certificate.qr)
                if event.position >= head:
                    call.cancel()
                    return qrs, events
    raise RuntimeError("the feed stream ended before its head")


async def main(args) -> dict:
    grpcload.build()
    root = Path(tempfile.mkdtemp(prefix="ct-cap-", dir="/tmp"))  # short: the proxies' Unix sockets
    settings = {"verify_svc": {"SCANS_PER_MINUTE": str(1_000_000_000), "SERVER_PROCESSES": str(args.verify_processes)}}
    topology = Topology(
        root, gateway=False, service_settings=settings, say=lambda m: print(f"topology: {m}", flush=True)
    )
    try:
        topology.start()
        return await measure(args, topology)
    finally:
        topology.stop()
        shutil.rmtree(root, ignore_errors=True)


async def measure(args, topology: Topology) -> dict:
    callers = await drill_callers(topology.owner_dsn, localstack.local_secrets(topology.root / "secrets.env"))
    db = await create_pool(topology.owner_dsn, min_size=1, max_size=2)
    results = [grpc.aio.insecure_channel(a) for a in topology.service_addresses("result_svc")]
    try:
        return await phases(args, topology, callers, db, results)
    finally:
        for channel in results:
            await channel.close()
        await db.close()


async def phases(args, topology: Topology, callers: Callers, db, results: list[grpc.aio.Channel]) -> dict:
    meter = CpuMeter(topology)
    labs = Labs(callers)
    figures: dict = {}

    async def head() -> int:
        return await db.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")

    async def pending() -> int:
        return await db.fetchval("SELECT count(*) FROM outbox WHERE relayed_at IS NULL")

    async def outbox_empty() -> bool:
        return await pending() == 0

    await poll(lambda: topology.relay_leader() is not None, "a relay leader", 30)
    leader = topology.relay_leader()
    follower = f"publish_svc-{1 - (leader or 0)}"
    print(f"relay leader: publish_svc-{leader}; the partner streams from {follower}", flush=True)

    # 1. The pipeline at a steady rate, a partner streaming: CPU per sample, commit-to-consumer lag.
    publish_address = f"127.0.0.1:{topology.ports[follower]}"
    feed_channel = grpc.aio.insecure_channel(publish_address, options=FEED_CHANNEL)
    consumer = Consumer(publish_service_pb2_grpc.PublishServiceStub(feed_channel), callers.partner["token"])
    consuming = asyncio.create_task(consumer.run())
    watch = Stopwatch(meter)
    uploaded = await labs.paced(results[0], args.pipeline_rate, args.pipeline_seconds)
    await asyncio.wait_for(consumer.wait_for(uploaded, 120), 130)
    pipeline = watch.phase(f"pipeline at {args.pipeline_rate} samples/s", uploaded)
    consuming.cancel()
    await feed_channel.close()
    lags = [(consumer.arrived[r] - at) * 1000 for r, at in labs.acknowledged.items()]
    figures["pipeline"] = {
        **pipeline.report(),
        "rate": args.pipeline_rate,
        "lag_p50_ms": round(percentile(lags, 0.5), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
    }
    shown = figures["pipeline"]
    print(f"  commit-to-consumer lag p50 {shown['lag_p50_ms']} ms, p99 {shown['lag_p99_ms']} ms", flush=True)

    # 2. Intake at its maximum: one replica, then both.
    for name, channels in (("intake_one_replica", results[:1]), ("intake_two_replicas", results)):
        watch = Stopwatch(meter)
        done = await labs.closed_loop(channels, args.lab_clients, args.intake_seconds)
        figures[name] = watch.phase(f"{name} ({args.lab_clients} labs, batches of 100)", done).report()

    # 3. The relay drains what intake left.
    head_before, certificates_before = await head(), await db.fetchval("SELECT count(*) FROM certificates")
    backlog = await pending()  # outbox rows; a relay that kept up with intake leaves none to measure
    watch = Stopwatch(meter)
    await poll(outbox_empty, "the relay drained the outbox", 900, interval=0.2)
    drained = await head() - head_before
    certificates = await db.fetchval("SELECT count(*) FROM certificates") - certificates_before
    relay = watch.phase("relay draining the backlog (events)", drained)
    figures["relay_drain"] = {
        **relay.report(),
        "certificates_per_s": round(certificates / relay.seconds, 1),
        "backlog_outbox_rows": backlog,
    }
    print(f"  from a backlog of {backlog} outbox rows; {certificates} certificates", flush=True)

    # Enough certificates for every Verify run to scan each QR once.
    while await db.fetchval("SELECT count(*) FROM certificates") < args.certificates:
        await labs.closed_loop(results, args.lab_clients, 5)
        await poll(outbox_empty, "the relay drained the outbox", 900, interval=0.2)

    # 4. A partner reads the whole feed from position 1 (one publish_svc replica).
    feed_head = await head()
    watch = Stopwatch(meter)
    qrs, events = await read_feed(publish_address, callers.partner["token"], feed_head)
    figures["feed_read"] = watch.phase(f"feed read from position 1 on {follower}", events).report()

    figures.update(await verify_figures(args, topology, meter, callers, qrs))
    return figures


async def verify_figures(args, topology: Topology, meter: CpuMeter, callers: Callers, qrs: list[str]) -> dict:
    """5. First scans on one replica, both, and paced on one (disjoint quarters of the QRs)."""
    token = callers.device["token"]
    ports = [topology.ports[f"verify_svc-{i}"] for i in range(REPLICAS)]
    for port in ports:  # each replica answers VALID from the cache (a QR none of the runs sends)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await verify_service_pb2_grpc.VerifyServiceStub(channel).Verify(
                vpb.VerifyRequest(qr=qrs[-1]), metadata=bearer(token), timeout=10
            )
        if answer.verdict != verdict_pb2.VERDICT_VALID or answer.status_source != verdict_pb2.STATUS_SOURCE_CACHE:
            raise RuntimeError(f"verify on port {port} does not answer VALID from the cache: {answer}")
    valid_before = await wait_for_valid_count(topology.owner_dsn, callers.device["id"], 2)
    fifth = (len(qrs) - 1) // 5
    work = Path(tempfile.mkdtemp(prefix="bench_capacity_"))
    bodies = []
    for i in range(5):
        path = work / f"qrs{i}.bin"
        grpcload.write_bodies(path, (vpb.VerifyRequest(qr=qr) for qr in qrs[i * fifth : (i + 1) * fifth]))
        bodies.append(path)
    header = [f"authorization: Bearer {token}"]

    def load(port: int, body: Path, **options) -> dict:
        options = {
            "connections": 8, "streams": 16, "duration": args.verify_seconds, "warmup": args.verify_warmup, **options
        }  # fmt: skip
        result = grpcload.run(port, VERIFY_PATH, body, headers=header, **options)
        if result["repeats"]:
            raise RuntimeError(f"{result['sent_total']} calls over {result['bodies']} QRs: some QR was sent twice; "
                               "raise --certificates")  # fmt: skip
        return result

    async def run(name: str, loads: list[tuple[int, Path]], **options) -> tuple[dict, list[dict]]:
        watch = Stopwatch(meter)
        runs = await asyncio.gather(*(asyncio.to_thread(functools.partial(load, p, b, **options)) for p, b in loads))
        calls = sum(r["requests"] + r["warmup_calls"] for r in runs)
        phase = watch.phase(name, calls).report()
        phase["rps"] = round(sum(r["rps"] for r in runs))
        phase["p50_ms"] = [r["p50_ms"] for r in runs]
        phase["p99_ms"] = [r["p99_ms"] for r in runs]
        for r in runs:
            print("  " + r["command"].replace(token, "$TOKEN"), flush=True)
        return phase, runs

    one, _ = await run("verify first scans, verify_svc-0 alone", [(ports[0], bodies[0])])
    two, _ = await run("verify first scans, both replicas", [(ports[0], bodies[1]), (ports[1], bodies[2])])
    rate = max(1, one["rps"] // 2)
    paced, _ = await run(
        f"verify first scans at {rate}/s on verify_svc-0", [(ports[0], bodies[3])], streams=1, rate=rate
    )
    calls = sum(p["operations"] for p in (one, two, paced))
    counted = await wait_for_valid_count(topology.owner_dsn, callers.device["id"], valid_before + calls)
    if counted - valid_before < calls:
        raise RuntimeError(f"grpcload completed {calls} calls but verify_svc counted {counted - valid_before} VALID")
    print(f"check: {calls} first scans, all counted VALID by verify_svc", flush=True)

    # The same paced load right after Redis is emptied as the failover hook empties the new master
    # (FLUSHALL ASYNC): every process forgets its mirror and reads statuses from Postgres (the read replica,
    # fenced by the feed head) until the relay has refilled Redis. Answers that are not VALID are counted.
    await asyncio.to_thread(lambda: topology.redis_client().flushall(asynchronous=True))
    storm, _ = await run(
        f"verify first scans at {rate}/s on verify_svc-0 from a flush of Redis",
        [(ports[0], bodies[4])], streams=1, rate=rate, warmup=0,
    )  # fmt: skip
    counted_after = await wait_for_valid_count(topology.owner_dsn, callers.device["id"], counted + storm["operations"])
    storm["valid"] = int(counted_after - counted)
    print(f"  {storm['valid']} of {storm['operations']} answered VALID", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "verify_one_replica": one,
        "verify_two_replicas": two,
        "verify_paced": {**paced, "rate": rate},
        "verify_after_redis_flush": {**storm, "rate": rate},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=60_000, help="certificates issued before Verify runs")
    parser.add_argument("--pipeline-rate", type=int, default=200, help="samples a second in the pipeline phase")
    parser.add_argument("--pipeline-seconds", type=float, default=20, help="length of the pipeline phase")
    parser.add_argument("--lab-clients", type=int, default=8, help="labs uploading at once at intake's maximum")
    parser.add_argument("--intake-seconds", type=float, default=10, help="length of each intake maximum run")
    parser.add_argument("--verify-seconds", type=float, default=5, help="measured seconds of each Verify run")
    parser.add_argument("--verify-warmup", type=float, default=1, help="warm-up seconds before each Verify run")
    parser.add_argument("--verify-processes", type=int, default=1, help="verify_svc SERVER_PROCESSES per replica")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(json.dumps({"bench": "capacity", **figures, **vars(arguments), "machine": MACHINE}))
