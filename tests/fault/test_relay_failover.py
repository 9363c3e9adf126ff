"""Kill or freeze the relay leader: a standby publish_svc takes over within 5 s; the feed has no gap and no
duplicate, and a frozen leader that wakes up commits nothing (its batches are fenced by the lease epoch)."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import NamedTuple

import grpc

from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.conftest import bearer, make_principal, publish_svc_env, service_env, start_result_svc
from tests.publish_svc.conftest import activate_new_key
from tests.result_svc.helpers import result, rid, sample, unique
from tools.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def is_leader(metrics_port: int) -> bool:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return False
    return "covidtest_relay_leader 1.0" in body


def answers_metrics(metrics_port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
    except OSError:
        return False
    return True


class Replica(NamedTuple):
    process: subprocess.Popen
    grpc_port: int
    metrics_port: int


class Cluster:
    """Two publish_svc processes (real replicas competing for the relay lease), an in-process result_svc,
    a sampling unit, a lab and a partner."""

    def __init__(self, env: dict[str, str], results, unit: dict, lab: dict, partner: dict):
        self.env, self.results, self.unit, self.lab, self.partner = env, results, unit, lab, partner
        self.processes: list[Replica] = []

    def start_replicas(self, count: int = 2) -> None:
        for _ in range(count):
            grpc_port, metrics_port = free_port(), free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.publish_svc"],
                cwd=ROOT,
                env={
                    **os.environ,
                    **publish_svc_env(self.env),
                    "GRPC_PORT": str(grpc_port),
                    "METRICS_PORT": str(metrics_port),
                },
                # Its own process group, as a container: a signal reaches its signing workers too.
                start_new_session=True,
            )
            self.processes.append(Replica(proc, grpc_port, metrics_port))

    async def leader(self) -> Replica:
        deadline = time.monotonic() + 30
        while True:
            leaders = [p for p in self.processes if await asyncio.to_thread(is_leader, p.metrics_port)]
            if leaders:
                assert len(leaders) == 1
                return leaders[0]
            assert time.monotonic() < deadline, "no relay leader elected"
            await asyncio.sleep(0.1)

    async def release(self, n: int, tag: int) -> None:
        items = [sample(unique("FO"), self.lab["id"], tag * 1000 + i) for i in range(n)]
        await self.results.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=bearer(self.unit["token"])
        )
        await self.results.RecordResults(
            rpb.RecordResultsRequest(
                request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=i.sample_barcode) for i in items]
            ),
            metadata=bearer(self.lab["token"]),
        )

    async def hit_leader_mid_work(self, signum: int) -> tuple[Replica, Replica, float]:
        """Send `signum` to the leader while it relays 200 results; returns (old leader, new leader, the
        moment of the signal) once the standby leads, asserting that took under 5 s."""
        leader = await self.leader()
        standby = next(p for p in self.processes if p is not leader)
        writers = asyncio.gather(*(self.release(20, tag) for tag in range(10)))
        await asyncio.sleep(0.3)  # the leader is relaying
        os.killpg(leader.process.pid, signum)  # the whole pod: SIGKILL ends it, SIGSTOP freezes it
        hit_at = time.monotonic()
        await writers
        while not await asyncio.to_thread(is_leader, standby.metrics_port):
            assert time.monotonic() - hit_at < 5, "the standby did not take over within 5 s"
            await asyncio.sleep(0.05)
        return leader, standby, hit_at

    async def read_feed(self, replica: Replica, expected: int) -> list:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.grpc_port}") as channel:
            feed = publish_service_pb2_grpc.PublishServiceStub(channel)
            call = feed.StreamResultEvents(
                ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(self.partner["token"])
            )
            events: list = []  # every event: each sample's registration, then its result
            try:
                while sum(e.HasField("result") for e in events) < expected:
                    events += list((await asyncio.wait_for(call.read(), 20)).events)
            finally:
                call.cancel()
        return events


@contextlib.asynccontextmanager
async def cluster_on(database_url: str):
    env = service_env(database_url, RELAY_POLL_SECONDS="0.05", RELAY_LEASE_SECONDS="3", LOG_LEVEL="WARNING")
    await activate_new_key(database_url, env)
    unit, lab = await make_principal(database_url, Role.SAMPLER), await make_principal(database_url, Role.LAB)
    partner = await make_principal(database_url, Role.PARTNER)
    intake = await start_result_svc(env)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{intake.port}")
    cluster = Cluster(env, result_service_pb2_grpc.ResultServiceStub(channel), unit, lab, partner)
    try:
        cluster.start_replicas()
        yield cluster
    finally:
        await channel.close()
        await intake.stop(0)
        for replica in cluster.processes:
            if replica.process.poll() is None:
                os.killpg(replica.process.pid, signal.SIGCONT)
                replica.process.terminate()
            replica.process.wait(30)
            try:  # whatever of its group outlived it (a killed leader's signing workers)
                os.killpg(replica.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def assert_feed_complete(db, events: list, expected: int) -> None:
    """Every result once, gapless, one certificate each, nothing left in the outbox."""
    # Each of the `expected` samples: its SAMPLE_REGISTERED event and its result, all gapless.
    assert [e.position for e in events] == list(range(1, 2 * expected + 1))
    results = [e for e in events if e.HasField("result")]
    assert len({e.result.result_id for e in results}) == len(results) == expected
    assert len({e.certificate.certificate_id for e in results}) == expected
    assert await db.fetchval("SELECT count(*) FROM certificates") == expected
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE relayed_at IS NULL") == 0


async def test_standby_takes_over_when_the_leader_is_killed(own_database):
    database_url, db = own_database
    async with cluster_on(database_url) as cluster:
        _, new_leader, _ = await cluster.hit_leader_mid_work(signal.SIGKILL)
        await cluster.release(20, 99)  # and new work is relayed by the new leader
        await assert_feed_complete(db, await cluster.read_feed(new_leader, 220), 220)


async def test_a_frozen_leader_is_replaced_and_commits_nothing_when_it_wakes(own_database):
    database_url, db = own_database
    async with cluster_on(database_url) as cluster:
        # A long pause, or a host cut off from the network, looks like this to everyone else.
        frozen, new_leader, frozen_at = await cluster.hit_leader_mid_work(signal.SIGSTOP)
        while await db.fetchval("SELECT count(*) FROM outbox WHERE relayed_at IS NULL"):
            assert time.monotonic() - frozen_at < 10, "the new leader did not relay the backlog"
            await asyncio.sleep(0.05)

        # The old leader wakes up believing it leads; its next batch finds another epoch and rolls back.
        os.killpg(frozen.process.pid, signal.SIGCONT)
        await cluster.release(20, 99)
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(is_leader, frozen.metrics_port) or not await asyncio.to_thread(
            answers_metrics, frozen.metrics_port
        ):
            assert time.monotonic() < deadline, "the woken leader never stood down"
            await asyncio.sleep(0.05)
        await cluster.release(20, 98)
        await assert_feed_complete(db, await cluster.read_feed(new_leader, 240), 240)
        # Each leader's events form one run of positions, in epoch order: the deposed leader wrote nothing
        # after its successor's first event.
        runs = await db.fetch(
            "SELECT relay_epoch, min(position) AS first, max(position) AS last FROM feed_events "
            "GROUP BY relay_epoch ORDER BY first"
        )
        assert [r["relay_epoch"] for r in runs] == sorted(r["relay_epoch"] for r in runs)
        assert all(earlier["last"] < later["first"] for earlier, later in zip(runs, runs[1:]))
        # The last run is the current leader's (the frozen one may have frozen before its first commit).
        assert runs[-1]["relay_epoch"] == await db.fetchval("SELECT epoch FROM relay_lease"), (
            "the standby never relayed"
        )
