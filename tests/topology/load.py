"""Load that runs through a failure drill, and the guarantees every drill checks afterwards.

- `Intake`: a lab client that registers samples and records their negative results in small batches
  through the result_svc replicas, as a real one does: after UNAVAILABLE or DEADLINE_EXCEEDED it sends the
  same request (same `request_id`, same body) again, to the next replica, until it is answered. What it was
  told is stored ("acknowledged") is remembered.
- `Scanner`: a checkpoint that verifies QR codes in a loop through the verify_svc replicas and records
  every answer (time, verdict, status source) or error code.
- The checks: every acknowledged result is in Postgres, the feed is gapless and carries a RELEASED event
  for each of them, and no revoked certificate ever answered VALID.

Everything speaks real gRPC to real service processes; nothing here knows how the fault is made.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import asyncpg
import grpc

from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import make_principal
from tests.result_svc.helpers import ago, result, sample
from tools import localstack
from tools.topology import Topology

RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
DEVICES, SCAN_INTERVAL_S = 4, 0.1  # 40 scans a second in all, each device well within SCANS_PER_MINUTE
CALL_TIMEOUT_S = 5.0


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Callers:
    """Tokens (and organisation ids) of the callers a drill needs: {'id', 'token'} each."""

    unit: dict
    lab: dict
    device: dict
    partner: dict  # granted personal data: it reads the QR codes


class Replicas:
    """One channel per replica of a service; `next()` takes them in turn (a retry goes to the next one)."""

    def __init__(self, addresses: Sequence[str]):
        self.channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self._turn = itertools.cycle(range(len(self.channels)))

    def next(self) -> grpc.aio.Channel:
        return self.channels[next(self._turn)]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def until_answered(replicas: Replicas, call, deadline_s: float = 120.0, on_error=None):
    """`call(channel)` until it is answered, the same request each time, on the next replica after a
    retryable error; returns (answer, retryable errors met). `on_error(code)`, if given, is called as each
    retryable error arrives (so that its time is known)."""
    errors: list[grpc.StatusCode] = []
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await call(replicas.next()), errors
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRIED or time.monotonic() > deadline:
                raise
            errors.append(exc.code())
            if on_error is not None:
                on_error(exc.code())
            await asyncio.sleep(0.05)  # a client's back-off, not synchronisation


@dataclass
class Intake:
    """A lab client writing through a drill (see the module docstring)."""

    replicas: Replicas
    callers: Callers
    batch: int = 10
    acknowledged: list[str] = field(default_factory=list)  # barcodes whose result the platform confirmed
    retried: list[tuple[float, grpc.StatusCode]] = field(default_factory=list)  # (time.monotonic() of it, code)
    acknowledged_at: list[float] = field(default_factory=list)  # time.monotonic() of each acknowledged batch

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.one_batch()

    async def one_batch(self) -> list[str]:
        """Register and record one batch, each call until answered; returns the barcodes."""
        first = len(self.acknowledged)
        items = [sample(f"DR-{uuid.uuid4().hex[:10]}", self.callers.lab["id"], first + i) for i in range(self.batch)]
        register = rpb.RegisterSamplesRequest(request_id=str(uuid.uuid4()), samples=items)
        registered, errors = await until_answered(
            self.replicas,
            lambda ch: result_service_pb2_grpc.ResultServiceStub(ch).RegisterSamples(
                register, metadata=_bearer(self.callers.unit["token"]), timeout=CALL_TIMEOUT_S
            ),
            on_error=self._retried,
        )
        assert registered.rejected_count == 0, registered
        record = rpb.RecordResultsRequest(
            request_id=str(uuid.uuid4()),
            results=[result(t.OUTCOME_NEGATIVE, sample_barcode=i.sample_barcode) for i in items],
        )
        recorded, errors = await until_answered(
            self.replicas,
            lambda ch: result_service_pb2_grpc.ResultServiceStub(ch).RecordResults(
                record, metadata=_bearer(self.callers.lab["token"]), timeout=CALL_TIMEOUT_S
            ),
            on_error=self._retried,
        )
        assert recorded.rejected_count == 0, recorded
        self.acknowledged += [i.sample_barcode for i in items]
        self.acknowledged_at.append(time.monotonic())
        return [i.sample_barcode for i in items]

    def _retried(self, code: grpc.StatusCode) -> None:
        self.retried.append((time.monotonic(), code))

    def _note(self, errors: list[grpc.StatusCode]) -> None:
        now = time.monotonic()
        self.retried += [(now, code) for code in errors]


@dataclass(frozen=True)
class Scan:
    at: float  # time.monotonic() when the answer (or error) arrived
    certificate_id: str
    verdict: int | None  # None: the call failed
    source: int | None
    code: grpc.StatusCode | None  # the error, when the call failed


@dataclass
class Scanner:
    """A checkpoint verifying `qrs` (certificate id → QR text) in turn through a drill."""

    replicas: Replicas
    callers: Callers
    qrs: dict[str, str]
    scans: list[Scan] = field(default_factory=list)
    # A device's pace: at least this long from one answer to the next scan (0: at once). A device
    # may send SCANS_PER_MINUTE scans per replica (600 by default): a drill longer than a few seconds
    # paces its scanners, or it measures the rate limit (RESOURCE_EXHAUSTED) instead of the fault.
    interval: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        for certificate_id in itertools.cycle(list(self.qrs)):
            if stop.is_set():
                return
            if self.interval and self.scans:
                await asyncio.sleep(max(0.0, self.scans[-1].at + self.interval - time.monotonic()))  # the pace
            stub = verify_service_pb2_grpc.VerifyServiceStub(self.replicas.next())
            try:
                answer = await stub.Verify(
                    vpb.VerifyRequest(qr=self.qrs[certificate_id]),
                    metadata=_bearer(self.callers.device["token"]),
                    timeout=2,
                )
                self.scans.append(Scan(time.monotonic(), certificate_id, answer.verdict, answer.status_source, None))
            except grpc.aio.AioRpcError as exc:
                self.scans.append(Scan(time.monotonic(), certificate_id, None, None, exc.code()))
                await asyncio.sleep(0.01)  # a checkpoint device's pause before the next scan

    def valid_while_revoked(self, revoked: set[str]) -> list[Scan]:
        return [s for s in self.scans if s.certificate_id in revoked and s.verdict == v.VERDICT_VALID]

    def errors(self, after: float = 0.0) -> list[Scan]:
        """The failed scans from `after` on."""
        return [s for s in self.scans if s.at >= after and s.code is not None]

    def error_window(self, after: float) -> float:
        """Seconds from `after` to the last failed scan (0: none failed)."""
        failed = [s.at for s in self.scans if s.at >= after and s.code is not None]
        return max(failed) - after if failed else 0.0

    def back_to_cache(self, after: float) -> float | None:
        """Seconds from `after` until scans are answered from the cache again for good (None: never)."""
        later = [s for s in self.scans if s.at >= after]
        last_other = max((s.at for s in later if s.source != v.STATUS_SOURCE_CACHE), default=after)
        if not any(s.at > last_other and s.source == v.STATUS_SOURCE_CACHE for s in later):
            return None
        return last_other - after


async def certificates(
    publish: Replicas, results: Replicas, callers: Callers, count: int, revoke: int, db: asyncpg.Pool
) -> tuple[dict[str, str], set[str]]:
    """`count` released certificates' QR codes by id (read on the partner's feed), the first `revoke` of
    them revoked by an amendment (their revocation confirmed in Postgres)."""
    head = await db.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")
    barcodes = set(await Intake(results, callers, batch=count).one_batch())
    qrs: dict[str, str] = {}
    by_barcode: dict[str, str] = {}
    stream = publish_service_pb2_grpc.PublishServiceStub(publish.next()).StreamResultEvents(
        ppb.StreamResultEventsRequest(from_position=head + 1), metadata=_bearer(callers.partner["token"])
    )
    try:
        async for message in stream:
            for event in message.events:
                if event.result.sample_barcode in barcodes and event.certificate.qr:
                    qrs[event.certificate.certificate_id] = event.certificate.qr
                    by_barcode[event.certificate.certificate_id] = event.result.sample_barcode
            if len(qrs) == count:
                break
    finally:
        stream.cancel()
    revoked = set(list(qrs)[:revoke])
    await revoke_certificates(results, callers, db, {c: by_barcode[c] for c in revoked})
    return qrs, revoked


async def revoke_certificates(
    results: Replicas, callers: Callers, db: asyncpg.Pool, barcodes: dict[str, str], timeout_s: float = 30
) -> None:
    """Amend the result of each certificate of `barcodes` (certificate id → sample barcode) to POSITIVE, each
    call until answered, and wait until Postgres (`db`) holds every one of those certificates REVOKED."""
    for barcode in barcodes.values():
        amend = rpb.AmendResultRequest(
            request_id=str(uuid.uuid4()),
            sample_barcode=barcode,
            outcome=t.OUTCOME_POSITIVE,
            tested_at=ago(minutes=30),
            method="RT-PCR",
            reason="drill: re-run after control failure",
        )
        await until_answered(
            results,
            lambda ch, request=amend: result_service_pb2_grpc.ResultServiceStub(ch).AmendResult(
                request, metadata=_bearer(callers.lab["token"]), timeout=CALL_TIMEOUT_S
            ),
        )
    deadline = time.monotonic() + timeout_s
    while await db.fetchval(
        "SELECT count(*) FROM certificates WHERE uvci = ANY($1) AND status = 'REVOKED'", list(barcodes)
    ) < len(barcodes):
        assert time.monotonic() < deadline, "the relay never revoked the amended results' certificates"
        await asyncio.sleep(0.05)


# --- the guarantees ------------------------------------------------------------------------------------


async def missing_results(db: asyncpg.Pool, barcodes: Sequence[str]) -> list[str]:
    """Acknowledged barcodes without a stored result (must be none)."""
    stored = await db.fetch(
        "SELECT s.barcode FROM samples s JOIN results r ON r.sample_id = s.id WHERE s.barcode = ANY($1)",
        list(barcodes),
    )
    return sorted(set(barcodes) - {r["barcode"] for r in stored})


async def feed_gaps(db: asyncpg.Pool) -> list[int]:
    """Positions missing between 1 and the feed's head (must be none)."""
    rows = await db.fetch(
        """SELECT g.p FROM generate_series(1, (SELECT COALESCE(max(position), 0) FROM feed_events)) AS g(p)
           WHERE NOT EXISTS (SELECT 1 FROM feed_events f WHERE f.position = g.p)"""
    )
    return [r["p"] for r in rows]


async def unpublished(db: asyncpg.Pool, barcodes: Sequence[str], timeout_s: float = 60) -> list[str]:
    """Acknowledged barcodes whose result has no RELEASED feed event once the relay had `timeout_s` to catch
    up (must be none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await db.fetch(
            """SELECT DISTINCT s.barcode FROM samples s JOIN results r ON r.sample_id = s.id
               JOIN feed_events f ON f.result_id = r.id AND f.kind = 'RELEASED' WHERE s.barcode = ANY($1)""",
            list(barcodes),
        )
        left = sorted(set(barcodes) - {r["barcode"] for r in rows})
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Losses:
    """What every drill must find empty afterwards (the three checks above)."""

    missing: list[str]  # acknowledged barcodes without a stored result
    gaps: list[int]  # feed positions missing
    unpublished: list[str]  # acknowledged barcodes the feed never carried

    def assert_none(self) -> None:
        assert not self.missing, f"acknowledged results lost: {self.missing}"
        assert not self.gaps, f"feed positions missing: {self.gaps}"
        assert not self.unpublished, f"acknowledged results never published: {self.unpublished}"


async def losses(db: asyncpg.Pool, acknowledged: Sequence[str], publish_timeout_s: float) -> Losses:
    """missing_results, feed_gaps and unpublished (after `publish_timeout_s` for the relay) of one drill."""
    return Losses(
        await missing_results(db, acknowledged),
        await feed_gaps(db),
        await unpublished(db, acknowledged, timeout_s=publish_timeout_s),
    )


async def drill_callers(owner_dsn: str, secrets: dict[str, str]) -> Callers:
    """A sampling unit, a lab, a partner granted personal data and a checkpoint device with their tokens, and
    an ACTIVE DCC signing key (sealed with `secrets`' SIGNING_KEYS_KEK_PUBLIC: the topology's secrets.env) so
    that the relay issues certificates; all written through `owner_dsn`."""
    from services.common.auth import Role
    from services.common.db import connect
    from services.registry import signing_keys
    from services.registry.key_sealing import SigningKeySealer, parse_kek_public
    from tests.conftest import make_principal

    unit, lab, partner, device = [
        await make_principal(owner_dsn, role, personal_data_access=role is Role.PARTNER)
        for role in (Role.SAMPLER, Role.LAB, Role.PARTNER, Role.CHECKPOINT)
    ]
    conn = await connect(owner_dsn)
    try:
        async with conn.transaction():
            if not await conn.fetchval(
                "SELECT count(*) FROM signing_keys WHERE state = 'ACTIVE' AND purpose = $1", signing_keys.DCC
            ):
                sealer = SigningKeySealer(parse_kek_public(secrets["SIGNING_KEYS_KEK_PUBLIC"]))
                key = await signing_keys.generate(conn, None, sealer, "ES256", purpose=signing_keys.DCC)
                await signing_keys.activate(conn, None, key.id)
    finally:
        await conn.close()
    return Callers(unit=unit, lab=lab, device=device, partner=partner)


# --- waiting, and paced checkpoints ------------------------------------------------------------------


async def poll(check, what: str, timeout_s: float, interval: float = 0.05):
    """`check()` until it returns a truthy value, which is returned; fails after `timeout_s`. It runs in a
    thread (the topology's API blocks); a coroutine it returns is awaited here."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.1f} s"
        await asyncio.sleep(interval)


async def stop_load(stop: asyncio.Event, tasks: Sequence[asyncio.Task]) -> None:
    """End the load: tell every task to stop, cancel what is still waiting, and wait for all of them."""
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(check, what: str, deadline: float, interval: float = 0.05):
    """`poll` up to an absolute `deadline` (time.monotonic()): a drill's overall budget."""
    return await poll(check, what, max(0.0, deadline - time.monotonic()), interval)


async def paced_scanners(
    owner_dsn: str, verifiers: Replicas, callers: Callers, qrs: dict[str, str], devices: int = DEVICES
) -> tuple[Scanner, list[Scanner]]:
    """`devices` checkpoint devices scanning `qrs` at a device's pace (within SCANS_PER_MINUTE, so a drill
    measures the fault, not the rate limit), their answers in one list: (the Scanner holding it, scanners)."""
    every = [callers.device] + [await make_principal(owner_dsn, Role.CHECKPOINT) for _ in range(devices - 1)]
    scanner = Scanner(verifiers, callers, qrs)
    paced = [
        Scanner(verifiers, replace(callers, device=d), qrs, scans=scanner.scans, interval=SCAN_INTERVAL_S)
        for d in every
    ]
    return scanner, paced


@dataclass(frozen=True)
class DrillClients:
    """A drill's callers and a channel to every replica of each service."""

    callers: Callers
    results: Replicas
    publish: Replicas
    verify: Replicas

    async def close(self) -> None:
        for replicas in (self.results, self.publish, self.verify):
            await replicas.close()


async def drill_clients(topology: Topology) -> DrillClients:
    """The callers (drill_callers) of `topology` and its services' replicas."""
    callers = await drill_callers(topology.owner_dsn, localstack.local_secrets(topology.root / "secrets.env"))
    return DrillClients(
        callers,
        Replicas(topology.service_addresses("result_svc")),
        Replicas(topology.service_addresses("publish_svc")),
        Replicas(topology.service_addresses("verify_svc")),
    )
