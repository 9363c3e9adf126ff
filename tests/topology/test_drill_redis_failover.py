"""Drill: the Redis master dies under Verify and intake load → the Sentinels promote the replica → HAProxy
follows → the failover hook (deploy/overlays/prod/redis/on-failover.sh) empties the new master.

The drill sets up the hazard the hook exists for before it kills the master: one revoked certificate whose
revocation reached the master but not the replica (the replica's copy of its status key still says VALID,
as after a replication lag at the moment of the crash). Then, with a Scanner verifying VALID and revoked QR
codes through both verify_svc replicas and an Intake recording results through both result_svc replicas:

- nothing acknowledged is lost, the feed stays gapless, every acknowledged result is published;
- no revoked certificate ever answers VALID — with the hook disabled this is the assertion that fails: the
  promoted replica serves the stale VALID of the planted certificate (run with DRILL_DISABLE_FAILOVER_HOOK=1,
  which forbids FLUSHALL on the replica before the kill, to see it fail);
- Verify never answers INTERNAL or UNKNOWN (a Redis outage costs latency, not answers);
- the hook ran: the new master counted a FLUSHALL, and a marker key written (and replicated) before the kill
  is gone.
Measured and printed as one JSON line (`DRILL {...}`): the failover time (kill → a quorum of Sentinels names
the replica), the time until HAProxy leads to it, the Verify error window and the time back to cache answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import asyncpg
import grpc
import pytest
import redis
import redis.asyncio

from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.registry.certificate_status import StatusCache
from tests.topology.conftest import start_topology
from tests.topology.load import (
    Intake,
    Scanner,
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
MARKER_KEY = "drill:written-before-the-kill"
HOOK_DISABLED = os.environ.get("DRILL_DISABLE_FAILOVER_HOOK") == "1"  # the failure demonstration only


@pytest.fixture(scope="module")
def topology():
    with start_topology(sentinel_down_after_ms=DOWN_AFTER_MS, gateway=False) as running:
        yield running


def _plant_stale_status(topology: Topology, replica: str, key: str, master_value: bytes) -> bytes:
    """The replica's copy of `key` made the status before the revocation (the master keeps REVOKED): a
    revocation that never reached the replica. Returns the planted value."""
    version, status, expires = master_value.decode().split(":")
    assert status == "REVOKED", master_value
    stale = f"{int(version) - 1}:VALID:{expires}".encode()
    node = topology.redis_client(replica)
    node.config_set("replica-read-only", "no")
    try:
        node.set(key, stale, keepttl=True)
    finally:
        node.config_set("replica-read-only", "yes")
    return stale


def _flushall_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_flushall", {}).get("calls", 0))


async def test_redis_master_failover_under_load(topology: Topology, db: asyncpg.Pool):
    clients = await drill_clients(topology)
    callers, results, publish, verify = clients.callers, clients.results, clients.publish, clients.verify
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        qrs, revoked = await certificates(publish, results, callers, count=12, revoke=4, db=db)
        old_master = await asyncio.to_thread(topology.redis_master)
        replica = next(name for name in ("redis-0", "redis-1") if name != old_master)
        master_client = topology.redis_client(old_master)
        replica_client = topology.redis_client(replica)

        # The hazard: one more certificate revoked, its revocation on the master only.
        planted_id = next(c for c in qrs if c not in revoked)
        by_barcode = dict(
            await db.fetch(
                "SELECT c.uvci, s.barcode FROM certificates c JOIN results r ON r.id = c.result_id "
                "JOIN samples s ON s.id = r.sample_id WHERE c.uvci = $1",
                planted_id,
            )
        )
        await revoke_certificates(results, callers, db, by_barcode)
        revoked.add(planted_id)
        key = StatusCache(redis.asyncio.Redis(), REDIS_PREFIX).key(planted_id)  # key() only: no connection
        master_value = await poll(
            lambda: (value := master_client.get(key)) and b":REVOKED:" in value and value,
            "the relay's REVOKED status on the master",
            10,
        )
        await poll(lambda: replica_client.get(key) == master_value, "the REVOKED status replicated", 5)
        stale = await asyncio.to_thread(_plant_stale_status, topology, replica, key, master_value)
        assert replica_client.get(key) == stale and master_client.get(key) == master_value
        # A marker key the hook's FLUSHALL must remove from the new master.
        master_client.set(MARKER_KEY, "1")
        assert master_client.wait(1, 2000) == 1
        assert replica_client.get(MARKER_KEY) == b"1"
        flushes_before = await asyncio.to_thread(_flushall_calls, replica_client)
        if HOOK_DISABLED:
            replica_client.execute_command("ACL", "SETUSER", "default", "-flushall")  # the hook fails

        # Load: checkpoint devices (each at a device's pace, into one list of scans) over VALID and revoked QR
        # codes, and a lab recording results.
        scanner, scanners = await paced_scanners(topology.owner_dsn, verify, callers, qrs)
        intake = Intake(results, callers)
        tasks = [asyncio.create_task(intake.run(stop)), *(asyncio.create_task(s.run(stop)) for s in scanners)]
        await poll(
            lambda: sum(s.source == v.STATUS_SOURCE_CACHE for s in scanner.scans) >= 50 and len(intake.acknowledged),
            "load running, Verify answering from the cache",
            20,
        )
        assert scanner.valid_while_revoked(revoked) == [], "a revoked certificate answered VALID before the kill"

        # The kill.
        killed_at = time.monotonic()
        assert await asyncio.to_thread(topology.kill_redis_master) == old_master
        new_master = await poll(
            lambda: (m := topology.agreed_redis_master()) not in (None, old_master) and m,
            "the Sentinels' promotion",
            20,
        )
        promoted_at = time.monotonic()
        await poll(
            lambda: _haproxy_port(topology) == topology.ports[new_master], "HAProxy leading to the new master", 15
        )
        haproxy_at = time.monotonic()
        flushed = HOOK_DISABLED or await poll(
            lambda: _flushall_calls(replica_client) > flushes_before and replica_client.get(MARKER_KEY) is None,
            "the failover hook's FLUSHALL on the new master",
            15,
        )
        # Load goes on until Verify has answered from the cache for a while after the failover (asserted below).
        deadline = time.monotonic() + 20
        while not _steady_on_cache(scanner, haproxy_at, seconds=2.0) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await stop_load(stop, tasks)
        await clients.close()

    errors = [s.code for s in scanner.scans if s.code is not None]
    sources = [s.source for s in scanner.scans if s.at >= killed_at and s.code is None]
    figures = {
        "drill": "redis_failover",
        "sentinel_down_after_ms": DOWN_AFTER_MS,
        "old_master": old_master,
        "new_master": new_master,
        "failover_s": round(promoted_at - killed_at, 3),
        "haproxy_follows_s": round(haproxy_at - killed_at, 3),
        "verify_error_window_s": round(scanner.error_window(killed_at), 3),
        "back_to_cache_s": _rounded(scanner.back_to_cache(killed_at)),
        "hook_ran": flushed is True and not HOOK_DISABLED,
        "flushall_calls_on_new_master": _flushall_calls(replica_client),
        "scans": len(scanner.scans),
        "scans_after_kill": len(sources),
        "scans_after_kill_from_database": sources.count(v.STATUS_SOURCE_DATABASE),
        "scan_errors": dict(Counter(code.name for code in errors)),
        "results_acknowledged": len(intake.acknowledged),
        "sources_by_second": _sources_by_second(scanner, killed_at),
        "intake_retries": dict(Counter(code.name for _, code in intake.retried)),
    }
    print("DRILL " + json.dumps(figures))
    if {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(errors):
        print("verify_svc logged:\n" + "\n".join(_errors_logged(topology, "verify_svc")))

    (await losses(db, intake.acknowledged, 30)).assert_none()
    wrong = scanner.valid_while_revoked(revoked)
    planted = sum(s.certificate_id == planted_id for s in wrong)
    assert wrong == [], (
        f"{len(wrong)} scans of revoked certificates answered VALID ({planted} of the one planted stale on the "
        f"replica), the first {wrong[0].at - killed_at:+.2f} s after the kill"
    )
    assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(errors), figures["scan_errors"]
    assert not HOOK_DISABLED, "the failover hook was disabled (DRILL_DISABLE_FAILOVER_HOOK)"
    assert figures["back_to_cache_s"] is not None, "Verify never answered from the cache again"


def _haproxy_port(topology: Topology) -> int | None:
    try:
        return int(topology.redis_client(socket_timeout=0.5).info("server")["tcp_port"])
    except (redis.RedisError, OSError):
        return None


def _steady_on_cache(scanner: Scanner, after: float, seconds: float) -> bool:
    """Every scan of the last `seconds` (at least 20 of them, all after `after`) answered from the cache."""
    now = time.monotonic()
    recent = [s for s in scanner.scans if s.at >= max(after, now - seconds)]
    return (
        now - after >= seconds
        and len(recent) >= 20
        and all(s.code is None and s.source == v.STATUS_SOURCE_CACHE for s in recent)
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _sources_by_second(scanner: Scanner, after: float) -> dict[int, dict[str, int]]:
    """Scans after `after`, by whole second since: how many answered from each source (or failed)."""
    table: dict[int, Counter] = {}
    for scan in scanner.scans:
        if scan.at >= after:
            what = scan.code.name if scan.code is not None else v.StatusSource.Name(scan.source)
            table.setdefault(int(scan.at - after), Counter())[what.removeprefix("STATUS_SOURCE_")] += 1
    return {second: dict(counts) for second, counts in sorted(table.items())}


def _errors_logged(topology: Topology, service: str) -> list[str]:
    """The lines of the service's replicas' logs that tell of an error (for a failed drill's report)."""
    lines = []
    for i in range(2):
        log = topology.logs_dir / f"{service}-{i}.log"
        lines += [
            f"{service}-{i}: {line}"
            for line in log.read_text(errors="replace").splitlines()
            if "ERROR" in line or "Traceback" in line or "Error" in line
        ]
    return lines[-40:]
