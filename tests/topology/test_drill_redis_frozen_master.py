"""Drill: the Redis master freezes (SIGSTOP) under Verify and intake load, the Sentinels promote the replica,
certificates are revoked on the new master, and then the old master comes back (SIGCONT).

A frozen master is not a dead one: when it resumes it still says `role:master`, with the data it had when
it froze — the revocations made meanwhile are not in it — until the Sentinels turn it into a replica, which
takes them about ten seconds (Sentinel waits before it reconfigures an instance that reports the wrong
role). A health check that only asks each server for its role sees two masters then. HAProxy must not
lead a single new connection to the old one: a verify_svc process starting then (a new pod, a restart)
would load its mirror from it and answer VALID for a certificate revoked during the freeze, and the relay's
writes there would be lost when it resyncs.

Checked: every new connection through HAProxy, opened every 50 ms from the thaw until the old master is a
replica and a while after, reaches the new master and reads REVOKED for the revoked certificates; no scan
of a revoked certificate answers VALID; Verify never answers INTERNAL; nothing acknowledged is lost and the
feed stays gapless. Measured (`DRILL {...}`): the failover, how long the old master claimed the role after
the thaw, and how many connections reached which server.

With the overlay's earlier HAProxy configuration (`balance first` over role checks alone) this drill failed:
from about 1 s after the thaw every new connection went to the old master (listed first) for 15 s, and read
the revoked certificates' statuses as VALID.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import asyncpg
import grpc
import pytest
import redis
import redis.asyncio

from services.registry.certificate_status import StatusCache
from tests.topology.conftest import start_topology
from tests.topology.load import (
    Intake,
    certificates,
    drill_clients,
    losses,
    paced_scanners,
    poll,
    revoke_certificates,
    stop_load,
)
from tools.topology import Topology

DOWN_AFTER_MS = 1000
REDIS_PREFIX = "ct"  # the services' REDIS_PREFIX default: the topology sets none
WATCH_AFTER_DEMOTION_S = 4.0  # new connections are still watched this long after the old master is a replica
PROPAGATION_S = 0.5  # a change reaches every process's mirror well inside this (the feed's bound: 500 ms)


@pytest.fixture(scope="module")
def topology():
    with start_topology(sentinel_down_after_ms=DOWN_AFTER_MS, gateway=False) as running:
        yield running


def _role(topology: Topology, name: str) -> str | None:
    try:
        return topology.redis_client(name, socket_timeout=0.5).info("replication")["role"]
    except (redis.RedisError, OSError):
        return None


def _new_connection_read(topology: Topology, keys: list[str]) -> tuple[int | None, list[bytes | None]]:
    """A fresh connection through HAProxy, as a starting process opens one: the port of the server it
    reached and the values of `keys` there; (None, []) when HAProxy leads nowhere."""
    client = topology.redis_client(socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        port = int(client.info("server")["tcp_port"])
        return port, list(client.mget(keys)) if keys else []
    except (redis.RedisError, OSError):
        return None, []
    finally:
        client.close()


async def test_a_frozen_redis_master_that_comes_back_gets_no_traffic(topology: Topology, db: asyncpg.Pool):
    clients = await drill_clients(topology)
    callers, results, publish, verify = clients.callers, clients.results, clients.publish, clients.verify
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    connections: Counter = Counter()
    stale_reads: list[tuple[float, list[bytes | None]]] = []
    try:
        qrs, _ = await certificates(publish, results, callers, count=12, revoke=0, db=db)
        old_master = await asyncio.to_thread(topology.redis_master)
        new_master_name = next(name for name in ("redis-0", "redis-1") if name != old_master)
        scanner, scanners = await paced_scanners(topology.owner_dsn, verify, callers, qrs)
        intake = Intake(results, callers)
        tasks = [asyncio.create_task(intake.run(stop)), *(asyncio.create_task(s.run(stop)) for s in scanners)]
        await poll(lambda: len(scanner.scans) >= 40 and len(intake.acknowledged), "load running", 20)

        frozen_at = time.monotonic()
        assert await asyncio.to_thread(topology.freeze_redis_master) == old_master
        try:
            await poll(
                lambda: topology.agreed_redis_master() == new_master_name, "the Sentinels promote the replica", 20
            )
            promoted_at = time.monotonic()
            await poll(
                lambda: _new_connection_read(topology, [])[0] == topology.ports[new_master_name],
                "HAProxy leading to the new master",
                15,
            )
            # Revoked while the old master is frozen: the new master gets REVOKED, the old one never will.
            by_barcode = dict(
                await db.fetch(
                    "SELECT c.uvci, s.barcode FROM certificates c JOIN results r ON r.id = c.result_id "
                    "JOIN samples s ON s.id = r.sample_id WHERE c.uvci = ANY($1)",
                    list(qrs)[:4],
                )
            )
            await revoke_certificates(results, callers, db, by_barcode)
            revoked = set(by_barcode)
            status_keys = [StatusCache(redis.asyncio.Redis(), REDIS_PREFIX).key(c) for c in revoked]
            new_master = topology.redis_client(new_master_name)
            await poll(
                lambda: all(value and b":REVOKED:" in value for value in new_master.mget(status_keys)),
                "the relay's REVOKED statuses on the new master",
                15,
            )
            revoked_at = time.monotonic()
        finally:
            await asyncio.to_thread(topology.thaw_redis, old_master)
        thawed_at = time.monotonic()

        # Until the old master is a replica (and a while after), open new connections as a starting process.
        claimed_until = thawed_at
        demoted_at: float | None = None
        while time.monotonic() - thawed_at < 40:
            role = await asyncio.to_thread(_role, topology, old_master)
            now = time.monotonic()
            if role == "master":
                claimed_until = now
            elif role == "slave" and demoted_at is None:
                demoted_at = now
            port, values = await asyncio.to_thread(_new_connection_read, topology, status_keys)
            connections[next((n for n in ("redis-0", "redis-1") if topology.ports[n] == port), "none")] += 1
            if port is not None and not all(value and b":REVOKED:" in value for value in values):
                stale_reads.append((now - thawed_at, values))
            if demoted_at is not None and now - demoted_at > WATCH_AFTER_DEMOTION_S:
                break
            await asyncio.sleep(0.05)  # a client's pace, not synchronisation
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await stop_load(stop, tasks)
        await clients.close()

    errors = [s.code for s in scanner.scans if s.code is not None]
    figures = {
        "drill": "redis_frozen_master",
        "sentinel_down_after_ms": DOWN_AFTER_MS,
        "failover_s": round(promoted_at - frozen_at, 3),
        "frozen_s": round(thawed_at - frozen_at, 3),
        "old_master_claimed_role_after_thaw_s": round(claimed_until - thawed_at, 3),
        "old_master_demoted_after_thaw_s": None if demoted_at is None else round(demoted_at - thawed_at, 3),
        "new_connections": {
            "old_master" if k == old_master else "new_master" if k != "none" else k: n for k, n in connections.items()
        },  # fmt: skip
        "stale_reads": len(stale_reads),
        "stale_reads_at_s": [round(at, 3) for at, _ in stale_reads[:3]]
        + [round(at, 3) for at, _ in stale_reads[3:][-1:]],
        "scans": len(scanner.scans),
        "scan_errors": dict(Counter(code.name for code in errors)),
        "results_acknowledged": len(intake.acknowledged),
    }
    print("DRILL " + json.dumps(figures))
    if stale_reads:
        haproxy_log = (topology.logs_dir / "haproxy.log").read_text(errors="replace").splitlines()
        print("HAProxy logged:\n" + "\n".join(line for line in haproxy_log if not line.startswith("["))[-6000:])

    assert demoted_at is not None, "the Sentinels never turned the old master into a replica"
    assert connections[old_master] == 0 and stale_reads == [], (
        f"{connections[old_master]} new connections reached the old master after the thaw; "
        f"{len(stale_reads)} read a revoked certificate's status as not REVOKED, the first at "
        f"+{stale_reads[0][0]:.2f} s"
        if stale_reads
        else f"{connections[old_master]} reached the old master"
    )
    assert connections[new_master_name] > 0
    # From the moment Redis holds the revocations (plus the time a change takes to reach every process's
    # mirror, well inside the feed's 500 ms), no scan of them may answer VALID.
    late = [s for s in scanner.valid_while_revoked(revoked) if s.at > revoked_at + PROPAGATION_S]
    assert late == [], f"{len(late)} scans of revoked certificates answered VALID, the first {late[0]}"
    assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(errors), figures["scan_errors"]
    (await losses(db, intake.acknowledged, 30)).assert_none()
