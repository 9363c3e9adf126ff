"""Drill: the Postgres primary dies under load; the synchronous standby is promoted and the services follow it.

Under Verify load (a Scanner over VALID and revoked QR codes through both verify_svc replicas) and intake
load (an Intake through both result_svc replicas, retrying the same request on the next replica): the
primary is killed (SIGKILL to every process of it) → the synchronous standby is promoted (`pg_ctl promote`)
→ the `rw` proxy, every service's DATABASE_URL, is pointed at it, as CloudNativePG moves its read-write
Service's endpoint → the relay leader and intake resume on the new primary.

Guarantees (tests/topology/load.py): nothing acknowledged is lost (a commit returned only once the
standby had flushed it), the feed is gapless and carries every acknowledged result, no revoked certificate
ever answers VALID, and no call ends INTERNAL or UNKNOWN. The outage windows are measured and printed as
one JSON line (`DRILL postgres_failover {...}`) for docs/capacity.md.

How a broken mechanism shows here: with the standby asynchronous, what the primary acknowledged but had not
yet sent to the standby is gone after the promotion. Provoked once (by hand, not left in): the primary's
synchronous_standby_names cleared and the standby SIGSTOPped while 20 more results were acknowledged, then
the primary killed and the standby resumed (SIGCONT) and promoted. The WAL already in the standby's socket
buffer still reached it, so the acknowledged results survived, but an acknowledged RegisterSamples did not:
its RecordResults, retried on the new primary, was rejected "sample not found" (rejected_count 10), which
ended that Intake task and failed `assert not failures`. A loss of acknowledged results themselves fails
`Losses.assert_none()` (acknowledged results missing, unpublished).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import grpc
import pytest

from services.common.db import create_pool
from tests.topology.conftest import start_topology
from tests.topology.load import (
    Intake,
    certificates,
    drill_clients,
    losses,
    paced_scanners,
    until,
)
from tools.topology import Topology

NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
DRILL_DEADLINE_S = 45


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with start_topology(gateway=False) as running:
        yield running


async def test_postgres_primary_killed_standby_promoted_nothing_acknowledged_lost(topology: Topology):
    started = time.monotonic()
    deadline = started + DRILL_DEADLINE_S
    clients = await drill_clients(topology)
    callers, results, publish, verifiers = clients.callers, clients.results, clients.publish, clients.verify
    db = await create_pool(topology.owner_dsn, min_size=1, max_size=2)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        qrs, revoked = await certificates(publish, results, callers, count=6, revoke=3, db=db)
        assert len(qrs) == 6 and len(revoked) == 3
        intakes = [Intake(results, callers, batch=10) for _ in range(2)]
        scanner, scanners = await paced_scanners(topology.owner_dsn, verifiers, callers, qrs)
        tasks = [asyncio.create_task(i.run(stop)) for i in intakes] + [
            asyncio.create_task(s.run(stop)) for s in scanners
        ]
        acknowledged = lambda: sum(len(i.acknowledged) for i in intakes)  # noqa: E731
        await until(lambda: acknowledged() >= 40 and len(scanner.scans) >= 50, "load before the kill", deadline)
        head_before = await db.fetchval("SELECT max(position) FROM feed_events")

        killed_at = time.monotonic()
        old = await asyncio.to_thread(topology.postgres_primary_kill)
        new = await asyncio.to_thread(topology.promote_standby)
        promoted_at = time.monotonic()
        await asyncio.to_thread(topology.switch_rw_to, new)
        switched_at = time.monotonic()
        assert (old, new) == ("primary", "standby")

        # Intake resumes: a batch acknowledged after the kill.
        await until(lambda: any(at > killed_at for i in intakes for at in i.acknowledged_at), "intake", deadline)
        intake_back = min(at for i in intakes for at in i.acknowledged_at if at > killed_at) - killed_at
        # The relay publishes again: the feed grows past its head at the kill, with a leader on the new primary.
        await db.expire_connections()
        await until(
            lambda: db.fetchval("SELECT max(position) > $1 FROM feed_events", head_before), "relay", deadline, 0.02
        )
        relay_back = time.monotonic() - killed_at
        leader = await until(lambda: topology.relay_leader() is not None, "a relay leader", deadline)
        assert leader
        # A while more of both loads on the new primary, so that the windows close.
        after = acknowledged()
        scanned = len(scanner.scans)
        await until(lambda: acknowledged() >= after + 40 and len(scanner.scans) >= scanned + 50, "load", deadline)
    finally:
        stop.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    # A non-retryable error (INTERNAL, …) or a rejected batch ends a load task: asserted after the guarantees.
    failures = [d for d in done if isinstance(d, BaseException)]

    try:
        barcodes = [b for i in intakes for b in i.acknowledged]
        lost = await losses(db, barcodes, 20)
    finally:
        await db.close()
        await clients.close()

    retried = sorted(at for i in intakes for at, _ in i.retried)
    intake_codes = {code.name for i in intakes for _, code in i.retried}
    verify_errors = scanner.errors(killed_at)
    figures = {
        "acknowledged": len(barcodes),
        "scans": len(scanner.scans),
        "intake_retried_errors": len(retried),
        "intake_error_codes": sorted(intake_codes),
        "intake_error_window_s": round(retried[-1] - retried[0], 3) if retried else 0.0,
        "intake_back_after_kill_s": round(intake_back, 3),
        "promote_s": round(promoted_at - killed_at, 3),
        "rw_switched_after_kill_s": round(switched_at - killed_at, 3),
        "relay_publishing_after_kill_s": round(relay_back, 3),
        "verify_errors": len(verify_errors),
        "verify_error_codes": sorted({s.code.name for s in verify_errors if s.code}),
        "verify_error_window_s": round(scanner.error_window(killed_at), 3),
        "drill_s": round(time.monotonic() - started, 1),
    }
    print(f"DRILL postgres_failover {json.dumps(figures)}", flush=True)

    lost.assert_none()
    assert not failures, failures
    assert not scanner.valid_while_revoked(revoked), scanner.valid_while_revoked(revoked)
    assert not [s for s in scanner.scans if s.code in NEVER], [s for s in scanner.scans if s.code in NEVER]
    assert retried, "the intake never saw the outage: the drill did not test anything"
