"""Drill: the publish_svc replica that relays is cut off Postgres (its proxy holds all traffic, closing
nothing, as a network partition does) under Verify and intake load; the other replica takes the relay.

- The other replica holds the lease within 5 s of the cut (asserted and measured; the lease is 3 s, and a
  batch the cut leader left open is ended by its idle-in-transaction timeout of one lease).
- The feed stays gapless, nothing acknowledged is lost and every acknowledged result is published.
- A partner's StreamResultEvents through the other replica keeps receiving: every acknowledged result's
  RELEASED event arrives on it, the positions it sees are contiguous and none twice.
- No revoked certificate answers VALID; Verify never answers INTERNAL or UNKNOWN.
- After the partition heals, one leader remains: the lease in Postgres names one replica, and the replicas'
  leader gauges settle to that one. During the partition no two replicas ever report themselves leader: the
  cut one stops once the lease it last renewed has run out by its own clock, before the other can take it.
Measured and printed as one JSON line (`DRILL {...}`).

What fails if the mechanism breaks: a relay whose lease outlived the cut (no idle-in-transaction timeout, a
longer lease) fails the 5 s takeover; two relays writing at once (no fencing by the lease epoch) fail the
gapless feed or the contiguous stream; a consumer tied to the cut replica fails "keeps receiving".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import grpc
import pytest

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2
from tests.topology.conftest import start_topology
from tests.topology.load import (
    Intake,
    certificates,
    drill_clients,
    losses,
    paced_scanners,
    poll,
    stop_load,
)
from tools.topology import REPLICAS, Topology

TAKEOVER_S = 5.0


@pytest.fixture(scope="module")
def topology():
    with start_topology(gateway=False) as running:
        yield running


@dataclass
class Consumer:
    """A partner reading the feed through one publish_svc replica from `from_position` on."""

    address: str
    token: str
    from_position: int
    positions: list[int] = field(default_factory=list)
    released: dict[str, float] = field(default_factory=dict)  # barcode → when its RELEASED event arrived

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stream = publish_service_pb2_grpc.PublishServiceStub(channel).StreamResultEvents(
                ppb.StreamResultEventsRequest(from_position=self.from_position),
                metadata=(("authorization", f"Bearer {self.token}"),),
            )
            async for message in stream:
                now = time.monotonic()
                for event in message.events:
                    self.positions.append(event.position)
                    if event.kind == _RELEASED and event.result.sample_barcode:
                        self.released.setdefault(event.result.sample_barcode, now)

    def gaps_or_repeats(self) -> tuple[list[int], list[int]]:
        """Positions the stream skipped, and positions it delivered more than once."""
        seen = Counter(self.positions)
        expected = range(self.from_position, max(self.positions, default=self.from_position - 1) + 1)
        return [p for p in expected if p not in seen], sorted(p for p, n in seen.items() if n > 1)


_RELEASED = testing_pb2.RESULT_EVENT_KIND_RELEASED


def _lease(topology: Topology) -> dict:
    """The relay lease as the primary holds it: the holder, whether it is current, its epoch."""
    [[holder, current, epoch]] = topology.sql(
        "primary", "SELECT holder, expires_at > clock_timestamp(), epoch FROM relay_lease"
    )
    return {"holder": holder, "current": current == "t", "epoch": int(epoch)}


async def test_relay_leader_partitioned_from_postgres(topology: Topology, db: asyncpg.Pool):
    clients = await drill_clients(topology)
    callers, results, publish, verify = clients.callers, clients.results, clients.publish, clients.verify
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        qrs, revoked = await certificates(publish, results, callers, count=8, revoke=3, db=db)
        [leader] = await poll(lambda: (i := topology.relay_leader()) is not None and [i], "a relay leader", 15)
        other = 1 - leader
        assert REPLICAS == 2
        lease_before = await asyncio.to_thread(_lease, topology)
        head = await db.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")
        consumer = Consumer(topology.service_addresses("publish_svc")[other], callers.partner["token"], head + 1)

        scanner, scanners = await paced_scanners(topology.owner_dsn, verify, callers, qrs, devices=2)
        intake = Intake(results, callers)
        tasks = [asyncio.create_task(consumer.run())]
        tasks += [asyncio.create_task(intake.run(stop)), *(asyncio.create_task(s.run(stop)) for s in scanners)]
        await poll(
            lambda: len(intake.acknowledged) >= 20 and len(consumer.released) >= 10 and len(scanner.scans) >= 10,
            "load running, the consumer receiving",
            20,
        )

        # The cut.
        cut_at = time.monotonic()
        await asyncio.to_thread(topology.partition_publish, leader)
        gauges_during: list[list[float | None]] = []

        def taken_over():
            gauges_during.append(topology.relay_leader_gauges())
            return topology.relay_leader() == other

        await poll(taken_over, f"publish_svc-{other} holding the relay lease", 15)
        takeover_s = time.monotonic() - cut_at
        lease_during = await asyncio.to_thread(_lease, topology)
        gauges_during.append(await asyncio.to_thread(topology.relay_leader_gauges))

        # The other replica relays: results acknowledged from now on reach the consumer.
        after_takeover = len(intake.acknowledged)
        await poll(lambda: len(intake.acknowledged) >= after_takeover + 30, "intake going on after the takeover", 20)
        fresh = intake.acknowledged[after_takeover : after_takeover + 30]
        await poll(lambda: all(b in consumer.released for b in fresh), "the consumer receiving after the cut", 20)
        first_after_cut = min((at for at in consumer.released.values() if at > cut_at), default=None)

        # Heal; one leader remains.
        healed_at = time.monotonic()
        await asyncio.to_thread(topology.heal_publish, leader)
        settled = await poll(
            lambda: (
                (lease := _lease(topology))["current"]
                and (i := topology.relay_leader()) is not None
                and topology.relay_leader_gauges() == [1.0 if j == i else 0.0 for j in range(REPLICAS)]
                and {**lease, "leader": i}
            ),
            "one relay leader after the heal (lease and gauges agreeing)",
            20,
        )
        settled_s = time.monotonic() - healed_at

        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks[1:]), 30)
        await poll(
            lambda: all(b in consumer.released for b in intake.acknowledged),
            "every acknowledged result on the consumer's stream",
            20,
        )
    finally:
        await stop_load(stop, tasks)
        await clients.close()

    errors = [s.code for s in scanner.scans if s.code is not None]
    gaps, repeats = consumer.gaps_or_repeats()
    both_gauges = sum(1 for g in gauges_during if g == [1.0, 1.0])
    figures = {
        "drill": "publish_partition",
        "partitioned": f"publish_svc-{leader}",
        "relay_takeover_s": round(takeover_s, 3),
        "first_event_to_consumer_after_cut_s": None if first_after_cut is None else round(first_after_cut - cut_at, 3),
        "lease_before": lease_before,
        "lease_during": lease_during,
        "gauge_samples_during_partition": len(gauges_during),
        "gauge_samples_both_leader": both_gauges,
        "after_heal": settled,
        "one_leader_after_heal_s": round(settled_s, 3),
        "results_acknowledged": len(intake.acknowledged),
        "consumer_events": len(consumer.positions),
        "scans": len(scanner.scans),
        "scan_errors": dict(Counter(code.name for code in errors)),
        "intake_retries": dict(Counter(code.name for _, code in intake.retried)),
    }
    print("DRILL " + json.dumps(figures))

    assert takeover_s < TAKEOVER_S, f"the relay moved {takeover_s:.2f} s after the cut"
    assert lease_during["holder"] != lease_before["holder"] and lease_during["epoch"] > lease_before["epoch"]
    (await losses(db, intake.acknowledged, 20)).assert_none()
    assert (gaps, repeats) == ([], []), "the consumer's stream skipped or repeated positions"
    assert scanner.valid_while_revoked(revoked) == []
    assert both_gauges == 0, f"{both_gauges} of {len(gauges_during)} gauge samples had both replicas leading"
    assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(errors), figures["scan_errors"]
