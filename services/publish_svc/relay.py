"""The publish relay: committed outbox events → certificates, revocations and the gapless feed.

Exactly one relay is active among the publish_svc replicas: the one holding the lease in `relay_lease`
(see docs/design.md, "Relay leadership"). The lease lasts RELAY_LEASE_SECONDS by Postgres's clock; a
standby takes it once it has expired, which adds one to its epoch. Every batch transaction renews the
lease for its own epoch first and again before COMMIT, holding the lease row locked in between, so:

- a leader that stops making progress (dead, frozen, cut off from Postgres) is replaced within about one
  lease: nothing renews its lease, and a transaction it left open is ended by Postgres after the same
  time (`idle_in_transaction_session_timeout` on the relay's connection), releasing the row;
- a deposed leader can never commit a batch: its renewal finds another epoch and the batch rolls back.

One batch is one transaction: lock the oldest unrelayed outbox rows, issue a certificate for each
released individual result (HCERT, signed with the active key), revoke the certificate of an amended
or withdrawn version, give each event the next feed position (head + 1, +2, …), mark the rows
relayed, and NOTIFY the feed. A crash anywhere rolls the whole batch back: the next leader redoes it
from the same rows, so the feed has no gap and no certificate is issued twice. Certificate statuses
go to Redis after the commit, with a version check; a status Redis missed (Redis down) stays marked
behind (`cached_version < status_version`) and is written again until Redis has it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.exceptions
from prometheus_client import Counter, Gauge

from services.common import tracing
from services.common.db import BACKGROUND_ERRORS, CONNECTION_ERRORS, init_connection
from services.common.messages import pending_sample_message, person_message, result_message
from services.common.metrics import DEPENDENCY_UP
from services.common.pii import PiiCipher
from services.common.protoconv import enum_value, timestamp
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb
from services.gen.covidtest.type.v1 import certificate_pb2, person_pb2, testing_pb2
from services.publish_svc import repository as repo
from services.publish_svc.config import PublishConfig
from services.publish_svc.repository import CertificateState, FeedEntry, IssuedCertificate, Revocation
from services.publish_svc.signing import CertificateRequest, CertificateSigner, Refused, SigningOutcome
from services.registry import signing_keys
from services.registry.certificate_status import StatusCache, StatusEntry
from services.registry.key_sealing import SigningKeyOpener

log = logging.getLogger("covidtest.relay")

RELAYED = Counter("covidtest_relay_events_total", "Outbox events given a feed position", ["kind"])
CERTIFICATES = Counter("covidtest_certificates_total", "Certificates issued and revoked", ["action"])
LEADER = Gauge(
    "covidtest_relay_leader",
    "1 while this process holds the relay lease: taken or renewed less than RELAY_LEASE_SECONDS ago",
)
EPOCH = Gauge("covidtest_relay_epoch", "The relay lease epoch this process last led with")
SIGNING_BLOCKED = Gauge(
    "covidtest_relay_signing_blocked",
    "1 while the feed waits for a signing key: none is ACTIVE, or the ACTIVE key's certificate is not valid now",
)

RETRY_S = 1.0  # after a lost connection or a failed batch
CACHE_SYNC_BATCH = 1000


class LeadershipLost(Exception):
    """Another replica took the lease: this relay's batch rolled back and it stands by again."""


async def connect_relay(dsn: str, lease_seconds: float) -> asyncpg.Connection:
    """The relay's own connection. Postgres ends it if it idles inside a transaction for longer than a
    lease (its process frozen mid-batch, or cut off), which rolls the batch back and frees the lease row."""
    conn = await asyncpg.connect(
        dsn,
        command_timeout=max(30.0, 4 * lease_seconds),
        server_settings={"idle_in_transaction_session_timeout": str(max(1, round(lease_seconds * 1000)))},
    )
    await init_connection(conn)
    return conn


@dataclass(frozen=True, slots=True)
class ActiveSigner:
    """The ACTIVE signing key: its id (recorded on each certificate) and the signer holding it."""

    key_id: uuid.UUID
    signer: CertificateSigner


@dataclass(slots=True)
class _Pending:
    """An event with its feed position, before its certificate (if it gets one) is signed."""

    row: asyncpg.Record  # a row of repository.PENDING_EVENTS
    event: pb.ResultEvent
    request: CertificateRequest | None  # None: this event issues no certificate


@dataclass(slots=True)
class _Batch:
    """What one batch writes, built event by event in feed order."""

    now: datetime
    # The certificate of each result this batch touches, kept current as the batch issues and revokes,
    # so a later event of the same result sees what an earlier one did.
    certificate_of: dict[uuid.UUID, CertificateState]
    certificates: list[IssuedCertificate] = field(default_factory=list)
    revocations: list[Revocation] = field(default_factory=list)
    statuses: list[CertificateState] = field(default_factory=list)  # what Redis must learn after the commit
    feed: list[FeedEntry] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def _issues_certificate(row: asyncpg.Record) -> bool:
    """A released result gets a certificate, and so does an amendment that is itself released; but not
    when the retention policy has erased the person (a certificate names its holder: a result recorded
    that late is published without one)."""
    releases = row["kind"] == "RELEASED" or (row["kind"] == "AMENDED" and row["payload"]["state"] == "RELEASED")
    if releases and row["full_name_enc"] is None:
        log.warning(
            "certificate not issued: the person's personal data was erased under the retention policy",
            extra={"fields": {"result_id": str(row["result_id"])}},
        )
        return False
    return releases


def _results_touched(rows: list[asyncpg.Record]) -> list[uuid.UUID]:
    """The results whose certificates the batch may read: its own, and those its amendments replace."""
    previous_ids = [
        uuid.UUID(r["payload"]["previous_result_id"])
        for r in rows
        if r["kind"] == "AMENDED" and r["payload"].get("previous_result_id")
    ]
    return previous_ids + [r["result_id"] for r in rows if r["result_id"] is not None]


class Relay:
    """This process's relay: competes for leadership and, while leader, relays batch after batch."""

    def __init__(
        self,
        config: PublishConfig,
        pii: PiiCipher,
        status_cache: StatusCache,
        on_published: Callable[[int], object] | None = None,
    ):
        self._config = config
        self._pii = pii
        self._opener = SigningKeyOpener(config.signing_keys_kek)
        self._cache = status_cache
        self._on_published: Callable[[int], object] = on_published or (lambda head: None)
        self._wake = asyncio.Event()
        self._stopping = False
        self._signer: ActiveSigner | None = None
        self._signing_blocked = False
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        self._standby_poll_s = min(0.5, config.relay_lease_seconds / 4)
        self.is_leader = False
        self.epoch = 0  # the lease epoch this relay took last (0: never led)
        # Until when the lease is surely this relay's: sent time of its last successful take or renewal plus
        # the lease. A leader cut off from Postgres stops saying it leads once that passes, even while its
        # batch still waits on the dead connection (else two replicas report 1 until that batch fails).
        self._lease_until = 0.0
        LEADER.set_function(self._leading)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._signer is not None:
            self._signer.signer.close()

    # --- leadership ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stand by for the lease and relay while leading, until stop()."""
        while not self._stopping:
            conn = None
            try:
                conn = await connect_relay(self._config.database_url, self._config.relay_lease_seconds)
                if not await self._await_lease(conn):
                    continue
                self.is_leader = True
                EPOCH.set(self.epoch)
                log.info("relay leader: relaying", extra={"fields": {"epoch": self.epoch}})
                await conn.add_listener("outbox", lambda *_: self._wake.set())
                await conn.add_listener("signing_keys", lambda *_: self._forget_signer())
                await self._lead(conn)
            except LeadershipLost:
                log.warning("relay deposed: another replica took the lease", extra={"fields": {"epoch": self.epoch}})
            except CONNECTION_ERRORS as exc:
                log.warning("relay lost the database", extra={"fields": {"error": type(exc).__name__}})
                await self._sleep(RETRY_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad batch must not kill the relay for good
                log.exception("relay batch failed; retrying")
                await self._sleep(RETRY_S)
            finally:
                await self._step_down(conn)

    async def take_lease(self, conn: asyncpg.Connection) -> bool:
        """One attempt to become the leader; on success `epoch` is this relay's."""
        sent = time.monotonic()
        epoch = await repo.take_lease(conn, self._holder, self._config.relay_lease_seconds)
        if epoch is None:
            return False
        self.epoch = epoch
        self._lease_until = sent + self._config.relay_lease_seconds
        return True

    def _leading(self) -> float:
        """The leader gauge's value at a scrape."""
        return 1.0 if self.is_leader and time.monotonic() < self._lease_until else 0.0

    async def _await_lease(self, conn: asyncpg.Connection) -> bool:
        """Stand by until this relay holds the lease (True) or stops (False)."""
        while not self._stopping:
            if await self.take_lease(conn):
                return True
            await self._sleep(self._standby_poll_s)
        return False

    async def _step_down(self, conn: asyncpg.Connection | None) -> None:
        was_leader, self.is_leader = self.is_leader, False
        SIGNING_BLOCKED.set(0)  # only the leader signs: a standby blocks nothing (alerts take the maximum)
        self._signing_blocked = False
        if was_leader:
            log.info("relay leadership released", extra={"fields": {"epoch": self.epoch}})
        if conn is None or conn.is_closed():
            return
        if was_leader and self._stopping:
            try:  # a clean shutdown hands over at once instead of after the lease
                await asyncio.wait_for(repo.release_lease(conn, self.epoch), self._config.relay_lease_seconds)
            except BACKGROUND_ERRORS:
                pass  # the lease expires by itself
        conn.terminate()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        # Every batch renews the lease, an empty one too: an idle leader polls well within its lease.
        idle_s = min(self._config.relay_poll_seconds, self._config.relay_lease_seconds / 3)
        while not self._stopping:
            self._wake.clear()
            relayed = await self.relay_batch(conn)
            await self.sync_cache(conn)
            if relayed < self._config.relay_batch_size:
                await self._sleep(idle_s)

    def _forget_signer(self) -> None:
        if self._signer is not None:
            self._signer.signer.close()
        self._signer = None
        self._wake.set()

    async def _active_signer(self, conn: asyncpg.Connection) -> ActiveSigner | None:
        if self._signer is None:
            loaded = await signing_keys.load_active(conn, self._opener, legacy=self._pii)
            if loaded is not None:
                material, key_id = loaded
                self._signer = ActiveSigner(key_id, CertificateSigner(material, self._config.relay_signing_processes))
        return self._signer

    # --- one batch -------------------------------------------------------------------------------

    async def relay_batch(self, conn: asyncpg.Connection) -> int:
        """Relay up to RELAY_BATCH_SIZE events in one transaction; returns how many."""
        async with conn.transaction():
            await self._fence(conn)
            rows = await repo.pending_events(conn, self._config.relay_batch_size)
            if not rows:
                return 0
            head = await repo.head_position(conn)
            certificate_of = await repo.certificates_of_results(conn, _results_touched(rows))
            now = datetime.now(UTC).replace(microsecond=0)
            pending, signer = await self._prepare_events(conn, rows, head, certificate_of, now)
            if not pending:
                return 0
            head = pending[-1].event.position
            batch = await self._assemble_batch(pending, signer, _Batch(now, certificate_of))
            await repo.insert_certificates(conn, batch.certificates)
            await repo.revoke_certificates(conn, batch.revocations)
            await repo.insert_feed_events(conn, batch.feed)
            await repo.mark_relayed(conn, batch.outbox_ids)
            await repo.notify_feed(conn, head)
            await self._fence(conn)  # the lease runs from the commit, however long the batch took
        for entry in batch.feed:
            RELAYED.labels(entry.kind).inc()
        CERTIFICATES.labels("issued").inc(len(batch.certificates))
        CERTIFICATES.labels("revoked").inc(len(batch.revocations))
        self._on_published(head)
        await self._put(conn, batch.statuses, head, new_marked_cached=True)
        return len(batch.outbox_ids)

    async def _fence(self, conn: asyncpg.Connection) -> None:
        """Renew this relay's lease inside the batch transaction, or roll the batch back if deposed."""
        sent = time.monotonic()
        if not await repo.renew_lease(conn, self.epoch, self._config.relay_lease_seconds):
            raise LeadershipLost
        self._lease_until = sent + self._config.relay_lease_seconds

    async def _prepare_events(
        self,
        conn: asyncpg.Connection,
        rows: list[asyncpg.Record],
        head: int,
        certificate_of: dict[uuid.UUID, CertificateState],
        now: datetime,
    ) -> tuple[list[_Pending], ActiveSigner | None]:
        """Give the events the next positions, in outbox order, up to the first one that needs a
        certificate while no key is ACTIVE; the signer is loaded once the first certificate is needed."""
        pending: list[_Pending] = []
        signer = None
        for row in rows:
            issues = _issues_certificate(row)
            if issues and signer is None:
                signer = self._usable(await self._active_signer(conn), now)
                if signer is None:
                    break  # keep order: nothing after this event may be published before it
            head += 1
            pending.append(self._prepare(row, head, now, issues and row["result_id"] not in certificate_of))
        return pending, signer

    def _usable(self, signer: ActiveSigner | None, now: datetime) -> ActiveSigner | None:
        """`signer` when its certificate is valid at `now`; otherwise None, said once per episode. A
        certificate signed outside its key's validity never verifies (SIGNATURE_INVALID), so the events
        wait for an operator to activate a valid key rather than go out as certificates no one accepts."""
        problem = None
        if signer is None:
            problem = "no ACTIVE signing key: the feed waits until an operator activates one"
        else:
            certificate = signer.signer.material.certificate
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                problem = "the ACTIVE signing key's certificate is not valid now: the feed waits for a valid key"
        if problem is not None:
            if not self._signing_blocked:  # one log line per episode, not one per poll
                log.error(problem, extra={"fields": {"key_id": str(signer.key_id) if signer else None}})
            self._signing_blocked = True
            SIGNING_BLOCKED.set(1)
            return None
        self._signing_blocked = False
        SIGNING_BLOCKED.set(0)
        return signer

    def _prepare(self, row: asyncpg.Record, position: int, now: datetime, issue: bool) -> _Pending:
        """The event without its certificate, and what its certificate needs (if it gets one)."""
        person = person_message(self._pii, row)
        event = pb.ResultEvent(
            position=position,
            kind=enum_value(testing_pb2.ResultEventKind, row["kind"]),
            committed_at=timestamp(row["committed_at"]),
            # Not the batch's `now`, which is cut to whole seconds for the certificate: the event's own
            # moment, and never before its commit (the contract), even with a clock behind Postgres's.
            published_at=timestamp(max(datetime.now(UTC), row["committed_at"])),
            person=person,
        )
        if row["result_id"] is None:  # SAMPLE_REGISTERED: "result pending", no result yet
            event.sample.CopyFrom(pending_sample_message(row))
            event.sample.state = testing_pb2.SAMPLE_STATE_REGISTERED  # as registered, whatever it is by now
            return _Pending(row, event, None)
        event.result.CopyFrom(result_message(row, id_column="result_id"))
        event.result.state = enum_value(testing_pb2.ResultState, row["payload"].get("state", row["state"]))
        return _Pending(row, event, self._certificate_request(row, person, now) if issue else None)

    def _certificate_request(self, row: asyncpg.Record, person: person_pb2.Person, now: datetime) -> CertificateRequest:
        # Valid for a time counted from the sample; a result recorded after that window still gets its
        # certificate, one that expires at once (verifiers answer EXPIRED).
        expires = max(
            row["collected_at"] + timedelta(hours=self._config.certificate_validity_hours),
            now + timedelta(seconds=1),
        )
        return CertificateRequest(
            family_name=person.family_name or person.full_name,
            given_name=person.given_name,
            date_of_birth=person.date_of_birth,
            test_type=row["test_type"],
            rat_device_id=row["rat_device_id"],
            method=row["method"],
            sample_collected_at=row["collected_at"],
            outcome=row["outcome"],
            testing_centre=row["lab_name"],
            issuer=self._config.hcert_issuer,
            issued_at=int(now.timestamp()),
            expires_at=int(expires.timestamp()),
        )

    async def _assemble_batch(self, pending: list[_Pending], signer: ActiveSigner | None, batch: _Batch) -> _Batch:
        """Sign the batch's certificates at once, then complete each event in feed order."""
        requests = [p.request for p in pending if p.request is not None]
        outcomes: Iterator[SigningOutcome] = iter(())
        if requests and signer is not None:  # a request is made only once a signer is found
            outcomes = iter(await signer.signer.issue(requests))
        for item in pending:
            revoked_id = self._revoke_previous(item, batch)
            certificate_id = None
            if item.request is not None and signer is not None:
                certificate_id = self._certify(item, item.request, next(outcomes), signer, batch)
            batch.feed.append(self._feed_entry(item, certificate_id, revoked_id))
            batch.outbox_ids.append(item.row["outbox_id"])
        return batch

    def _revoke_previous(self, item: _Pending, batch: _Batch) -> uuid.UUID | None:
        """An amendment or withdrawal revokes the VALID certificate of the version it replaces."""
        row = item.row
        if row["kind"] == "AMENDED":
            old_result = uuid.UUID(row["payload"]["previous_result_id"])
        elif row["kind"] == "WITHDRAWN":
            old_result = row["result_id"]
        else:
            return None
        old = batch.certificate_of.get(old_result)
        if old is None or old.status != "VALID":
            return None
        revoked = old._replace(status="REVOKED", status_version=old.status_version + 1)
        batch.revocations.append(Revocation(old.id, row["kind"]))
        batch.certificate_of[old_result] = revoked
        batch.statuses.append(revoked)
        item.event.revoked_certificate_id = old.uvci
        return old.id

    def _certify(
        self, item: _Pending, request: CertificateRequest, outcome: SigningOutcome, signer: ActiveSigner, batch: _Batch
    ) -> uuid.UUID | None:
        """Put a signed certificate on the event and in the batch; returns its id (None if refused)."""
        row = item.row
        if isinstance(outcome, Refused):
            # Intake let through data that cannot make a valid DCC: publish the event without a
            # certificate rather than stop the feed for everyone; operators see the error and metric.
            CERTIFICATES.labels("failed").inc()
            log.error(
                "certificate not issued",
                extra={"fields": {"result_id": str(row["result_id"]), "error": outcome.reason}},
            )
            return None
        certificate_id = uuid.uuid4()
        expires_at = datetime.fromtimestamp(request.expires_at, UTC)
        item.event.certificate.CopyFrom(
            certificate_pb2.Certificate(
                certificate_id=outcome.uvci,
                qr=outcome.qr,
                status=certificate_pb2.CERTIFICATE_STATUS_VALID,
                issued_at=timestamp(batch.now),
                expires_at=timestamp(expires_at),
                result_id=str(row["result_id"]),
                kid=signer.signer.material.kid,
            )
        )
        batch.certificates.append(
            IssuedCertificate(
                id=certificate_id,
                uvci=outcome.uvci,
                result_id=row["result_id"],
                person_id=row["person_id"],
                signing_key_id=signer.key_id,
                qr_enc=self._pii.seal("certificate.qr", outcome.qr),
                issued_at=batch.now,
                expires_at=expires_at,
            )
        )
        state = CertificateState(certificate_id, outcome.uvci, "VALID", 1, expires_at)
        batch.certificate_of[row["result_id"]] = state
        batch.statuses.append(state)
        return certificate_id

    def _feed_entry(self, item: _Pending, certificate_id: uuid.UUID | None, revoked_id: uuid.UUID | None) -> FeedEntry:
        row = item.row
        # The intake call's trace continues here (a span per published event) and, through the feed event,
        # at its delivery; with tracing off here the intake's context passes through unchanged.
        traceparent = row["payload"].get(tracing.TRACEPARENT)
        with tracing.span(f"relay {row['kind']}", parent=traceparent, position=item.event.position):
            traceparent = tracing.current_traceparent() or traceparent
        return FeedEntry(
            position=item.event.position,
            outbox_id=row["outbox_id"],
            kind=row["kind"],
            person_id=row["person_id"],
            result_id=row["result_id"],
            certificate_id=certificate_id,
            revoked_certificate_id=revoked_id,
            payload_enc=self._pii.seal_bytes("feed.event", item.event.SerializeToString()),
            committed_at=row["committed_at"],
            relay_epoch=self.epoch,
            traceparent=traceparent,
        )

    # --- Redis ---------------------------------------------------------------------------------------

    async def sync_cache(self, conn: asyncpg.Connection) -> None:
        """Write the statuses Redis is behind on (after a Redis outage), and raise the refill floor to the
        feed head: a floor that a flush or failover removed is back within one relay loop."""
        behind = await repo.statuses_behind_cache(conn, CACHE_SYNC_BATCH)
        head = await repo.head_position(conn)  # after the read: every status read is current as of it
        await self._put(conn, behind, head, new_marked_cached=False)

    async def _put(
        self, conn: asyncpg.Connection, states: list[CertificateState], feed_head: int, *, new_marked_cached: bool
    ) -> None:
        """Write statuses to Redis, with the refill floor raised to `feed_head` (the feed head they are
        current as of; see services.registry.certificate_status). New certificates are inserted already
        marked cached: if this write is lost, a verifier's cache miss reads Postgres, which is correct.
        Revocations stay marked behind until Redis confirms them, since a stale VALID in Redis would be
        wrong. On a Redis error every status of `states` is marked behind, so the catch-up writes it once
        Redis is back."""
        try:
            await self._cache.put_many(
                [StatusEntry(s.uvci, s.status, s.status_version, int(s.expires_at.timestamp())) for s in states],
                feed_head=feed_head,
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            DEPENDENCY_UP.labels("publish_svc", "redis").set(0)
            if states:
                log.warning(
                    "Redis missed certificate statuses; will retry",
                    extra={"fields": {"count": len(states), "error": type(exc).__name__}},
                )
                await repo.mark_behind(conn, [s.id for s in states])
            return
        DEPENDENCY_UP.labels("publish_svc", "redis").set(1)
        await repo.mark_cached(
            conn, [(s.id, s.status_version) for s in states if not (new_marked_cached and s.status_version == 1)]
        )
