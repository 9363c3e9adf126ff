"""Drill: the read replica stops replaying while results are amended and Redis loses their revoked statuses.

verify_svc reads statuses from the read replica (READ_DATABASE_URL, the `ro` proxy) on a Redis miss. Under
Verify load (a Scanner through both verify_svc replicas) and intake load: the replica's WAL replay is paused
(pg_wal_replay_pause()) → results are amended, the relay revokes their certificates (the primary holds
REVOKED, the replica still VALID) → their status keys are deleted from Redis, again and again, as a Redis
failover to a replica that missed the writes (or its flush hook) loses them → every scan of them misses the
cache. Verify must never answer VALID for them: a replica read counts only once its snapshot has reached
the primary's feed head, else the status is read from the primary (services/verify_svc/status.py), so they
answer REVOKED with status source DATABASE, and covidtest_status_replica_behind_total on the replicas'
/metrics rises. Replay resumed → the replica serves again (the counter stays put over further misses).

Shown to fail with the fence disabled (StatusLookup built with primary=None, as if service.py did not pass
the primary's pool; done once through a sitecustomize hook in the services' environment, services/ left
untouched): the revoked certificates were answered VALID from the paused replica (source DATABASE), failing
`assert not stale`, and the counter never rose.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from services.common.db import connect, create_pool
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
    revoke_certificates,
    until,
)
from tools.topology import REPLICAS, Topology

BEHIND = "covidtest_status_replica_behind_total"
DRILL_DEADLINE_S = 45
# Each phase deletes the revoked certificates' keys until Verify has refilled them (after a read from Postgres)
# REFILLS_WANTED times per certificate and answered at least one scan from Postgres (status source DATABASE).
# A scan that races another scan's refill may read Redis instead (source CACHE); the counter shows the reads
# the fence passed on to the primary.
REFILLS_WANTED = 3


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with start_topology(gateway=False) as running:
        yield running


def replica_behind_total(topology: Topology) -> float:
    """covidtest_status_replica_behind_total summed over the verify_svc replicas' /metrics."""
    total = 0.0
    for i in range(REPLICAS):
        with urllib.request.urlopen(topology.metrics_url("verify_svc", i), timeout=3) as answer:
            match = re.search(rf"^{BEHIND} (\S+)$", answer.read().decode(), re.MULTILINE)
        assert match, f"verify_svc-{i} exports no {BEHIND}"
        total += float(match.group(1))
    return total


def redis_prefix(topology: Topology) -> str:
    """REDIS_PREFIX of the verify_svc processes (their environment; the services' default when unset)."""
    environ = Path(f"/proc/{topology.pid('verify_svc-0')}/environ").read_bytes().split(b"\0")
    for entry in environ:
        if entry.startswith(b"REDIS_PREFIX="):
            return entry.partition(b"=")[2].decode()
    return "ct"


async def on_replica(topology: Topology, query: str, *args) -> list:
    """Rows of `query` on the read replica, on a connection of its own (replay, once resumed, ends sessions
    whose snapshot conflicts with it: a long-lived connection would not survive the drill)."""
    conn = await connect(topology.ro_dsn())
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def lose_keys_until_read_from_postgres(
    client: redis.Redis, cache: StatusCache, scanner: Scanner, certificate_ids: set[str], after: float, deadline
) -> tuple[int, int]:
    """Deletes the certificates' status keys (a Redis failover losing them; the refill from Postgres writes
    them back) until they were refilled REFILLS_WANTED times each and one scan of them after `after` was answered
    from Postgres; returns how many deletions were sent and how many keys they found (refills)."""
    keys = [cache.key(c) for c in certificate_ids]

    deleted: list[int] = []

    def enough() -> bool:
        if sum(deleted) < REFILLS_WANTED * len(keys):
            return False
        return any(
            s.at > after and s.source == v.STATUS_SOURCE_DATABASE and s.certificate_id in certificate_ids
            for s in scanner.scans
        )

    while not enough():
        if [s for s in scanner.valid_while_revoked(certificate_ids) if s.at > after]:
            break  # the guarantee is broken already: the assertions after the drill report it
        if time.monotonic() > deadline:
            later = [(s.certificate_id in certificate_ids, s.source, s.code) for s in scanner.scans if s.at > after]
            counts = {str(k): later.count(k) for k in set(later)}
            raise AssertionError(
                f"the revoked certificates were not read from Postgres: scans since {counts}; "
                f"{len(deleted)} deletions, keys deleted {sum(deleted)}"
            )
        deleted.append(await client.delete(*keys))
        await asyncio.sleep(0.02)
    return len(deleted), sum(deleted)


async def test_paused_replica_never_answers_a_stale_valid(topology: Topology):
    started = time.monotonic()
    deadline = started + DRILL_DEADLINE_S
    clients = await drill_clients(topology)
    callers, results, publish, verifiers = clients.callers, clients.results, clients.publish, clients.verify
    db = await create_pool(topology.owner_dsn, min_size=1, max_size=2)
    client = redis.Redis.from_url(topology.redis_url)
    cache = StatusCache(client, redis_prefix(topology))
    stop_intake, stop_scans = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        qrs, revoked_before = await certificates(publish, results, callers, count=8, revoke=2, db=db)
        rows = await db.fetch(
            """SELECT c.uvci, s.barcode FROM certificates c JOIN results r ON r.id = c.result_id
               JOIN samples s ON s.id = r.sample_id WHERE c.uvci = ANY($1)""",
            list(qrs),
        )
        barcode = {r["uvci"]: r["barcode"] for r in rows}
        to_revoke = set(sorted(set(qrs) - revoked_before)[:3])

        def replica_statuses():
            return on_replica(topology, "SELECT uvci, status FROM certificates WHERE uvci = ANY($1)", list(qrs))

        async def replica_has_all() -> bool:
            return len(await replica_statuses()) == len(qrs)

        await until(replica_has_all, "the replica to hold the certificates", deadline)

        intake = Intake(results, callers, batch=10)
        scanner, scanners = await paced_scanners(topology.owner_dsn, verifiers, callers, qrs)
        tasks = [asyncio.create_task(intake.run(stop_intake))] + [
            asyncio.create_task(s.run(stop_scans)) for s in scanners
        ]
        await until(lambda: len(scanner.scans) >= 50 and len(intake.acknowledged) >= 20, "load", deadline)
        behind_before = await asyncio.to_thread(replica_behind_total, topology)

        # The replica stops replaying; the lab amends three results; the relay revokes their certificates.
        await asyncio.to_thread(topology.pause_replica_replay)
        paused_at = time.monotonic()
        await revoke_certificates(results, callers, db, {c: barcode[c] for c in to_revoke})

        async def relay_wrote_revocations() -> bool:
            statuses = [await cache.get(c) for c in to_revoke]
            return all(s is not None and s.status == "REVOKED" for s in statuses)

        await until(relay_wrote_revocations, "the relay to write the revocations to Redis", deadline)
        revoked_at = time.monotonic()
        stale_on_replica = {r["uvci"]: r["status"] for r in await replica_statuses()}
        assert {stale_on_replica[c] for c in to_revoke} == {"VALID"}, "the replica is not behind: no drill"

        # Their keys lost, again and again: every miss goes to Postgres, through the fence.
        deletions = await lose_keys_until_read_from_postgres(client, cache, scanner, to_revoke, revoked_at, deadline)
        behind_paused = await asyncio.to_thread(replica_behind_total, topology)
        assert {r["status"] for r in await replica_statuses() if r["uvci"] in to_revoke} == {"VALID"}
        paused_scans = [s for s in scanner.scans if s.at > revoked_at and s.certificate_id in to_revoke]

        # Intake stops (the feed head then stays put); replay resumes; the replica catches up.
        stop_intake.set()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await asyncio.to_thread(topology.resume_replica_replay)
        resumed_at = time.monotonic()

        async def replica_caught_up() -> bool:
            primary_head = await db.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")
            (replica_head,) = (await on_replica(topology, "SELECT COALESCE(max(position), 0) FROM feed_events"))[0]
            revoked_now = {r["uvci"] for r in await replica_statuses() if r["status"] == "REVOKED"}
            return replica_head == primary_head and to_revoke <= revoked_now

        await until(replica_caught_up, "the replica to replay the revocations", deadline)
        caught_up_s = time.monotonic() - resumed_at
        behind_resumed = await asyncio.to_thread(replica_behind_total, topology)
        caught_up_at = time.monotonic()
        await lose_keys_until_read_from_postgres(client, cache, scanner, to_revoke, caught_up_at, deadline)
        behind_after = await asyncio.to_thread(replica_behind_total, topology)
    finally:
        stop_intake.set()
        stop_scans.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
    failures = [d for d in done if isinstance(d, BaseException)]

    try:
        lost = await losses(db, intake.acknowledged, 20)
    finally:
        await db.close()
        await clients.close()

    # The certificates revoked during the drill count from the moment Redis held their revocation (before
    # it, the relay had not published it yet: VALID was the platform's answer).
    stale = scanner.valid_while_revoked(revoked_before)
    stale += [s for s in scanner.valid_while_revoked(to_revoke) if s.at > revoked_at]
    from_postgres = [s for s in paused_scans if s.source == v.STATUS_SOURCE_DATABASE]
    figures = {
        "scans": len(scanner.scans),
        "acknowledged": len(intake.acknowledged),
        "paused_s": round(resumed_at - paused_at, 3),
        "revoked_scans_while_paused": len(paused_scans),
        "of_them_from_postgres": len(from_postgres),
        "valid_before_the_relay_published": len(scanner.valid_while_revoked(to_revoke)) - len(stale),
        "deletions_keys_found_while_paused": deletions,
        "replica_behind_total": [behind_before, behind_paused, behind_resumed, behind_after],
        "replica_caught_up_after_resume_s": round(caught_up_s, 3),
        "verify_errors": len(scanner.errors()),
        "verify_error_codes": sorted({s.code.name for s in scanner.errors() if s.code}),
        "drill_s": round(time.monotonic() - started, 1),
    }
    print(f"DRILL stale_replica {json.dumps(figures)}", flush=True)

    assert not stale, f"revoked certificates answered VALID: {stale}"
    assert from_postgres and {s.verdict for s in from_postgres} == {v.VERDICT_REVOKED}, from_postgres
    assert behind_paused > behind_before, f"{BEHIND} did not rise while the replica was paused"
    # Caught up, the replica serves the misses again: none of them is passed over to the primary.
    assert behind_after == behind_resumed, f"{BEHIND} still rising after the replica caught up"
    assert not failures, failures
    lost.assert_none()
    assert not scanner.errors(), scanner.errors()[:5]
