"""The publish relay: committed outbox events → certificates, revocations and the gapless feed.

Exactly one relay is active among the publish_svc replicas: the one holding a session-level Postgres
advisory lock on its own connection. Standbys try for the lock every second, so when the leader's
process or connection dies (Postgres then frees the lock at once) a standby takes over within about a
second. The leader does all its work on that same connection: if it loses the connection it loses
the lock and can no longer write, so two relays can never write at once.

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
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.exceptions
from prometheus_client import Counter, Gauge

from services.common.db import CONNECTION_ERRORS, connect
from services.common.messages import person_message, result_message
from services.common.metrics import DEPENDENCY_UP
from services.common.pii import PiiCipher
from services.common.protoconv import enum_value, timestamp
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb
from services.gen.covidtest.type.v1 import certificate_pb2, testing_pb2
from services.publish_svc import repository as repo
from services.publish_svc.config import PublishConfig
from services.publish_svc.signing import CertificateRequest, CertificateSigner
from services.registry import signing_keys
from services.registry.certificate_status import StatusCache

log = logging.getLogger("covidtest.relay")

RELAYED = Counter("covidtest_relay_events_total", "Outbox events given a feed position", ["kind"])
CERTIFICATES = Counter("covidtest_certificates_total", "Certificates issued and revoked", ["action"])
LEADER = Gauge("covidtest_relay_leader", "1 while this process holds the relay lock")

STANDBY_RETRY_S = 1.0
CACHE_SYNC_BATCH = 1000


@dataclass
class _Pending:
    row: asyncpg.Record
    event: pb.ResultEvent
    request: CertificateRequest | None


@dataclass
class _Batch:
    certificates: list[tuple] = field(default_factory=list)
    revocations: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    statuses: list[dict] = field(default_factory=list)  # what Redis must learn: id, uvci, status, version, exp
    feed: list[tuple] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


class Relay:
    def __init__(self, config: PublishConfig, pii: PiiCipher, status_cache: StatusCache, on_published=None):
        self._config = config
        self._pii = pii
        self._cache = status_cache
        self._on_published = on_published or (lambda head: None)
        self._wake = asyncio.Event()
        self._stopping = False
        self._signer: tuple[uuid.UUID, CertificateSigner] | None = None
        self.is_leader = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._signer is not None:
            self._signer[1].close()

    # --- leadership ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Compete for leadership and relay while leader, until stop()."""
        while not self._stopping:
            conn = None
            try:
                conn = await connect(self._config.database_url)
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", repo.RELAY_LOCK):
                    await conn.close()
                    conn = None
                    await self._sleep(STANDBY_RETRY_S)
                    continue
                self.is_leader = True
                LEADER.set(1)
                log.info("relay leader: relaying")
                await conn.add_listener("outbox", lambda *_: self._wake.set())
                await conn.add_listener("signing_keys", lambda *_: self._forget_signer())
                await self._lead(conn)
            except CONNECTION_ERRORS as exc:
                log.warning("relay lost the database", extra={"fields": {"error": type(exc).__name__}})
                await self._sleep(STANDBY_RETRY_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad batch must not kill the relay for good
                log.exception("relay batch failed; retrying")
                await self._sleep(STANDBY_RETRY_S)
            finally:
                if self.is_leader:
                    log.info("relay leadership released")
                self.is_leader = False
                LEADER.set(0)
                if conn is not None and not conn.is_closed():
                    conn.terminate()  # also frees the lock

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while not self._stopping:
            self._wake.clear()
            relayed = await self.relay_batch(conn)
            await self.sync_cache(conn)
            if relayed < self._config.relay_batch_size:
                await self._sleep(self._config.relay_poll_seconds)

    def _forget_signer(self) -> None:
        if self._signer is not None:
            self._signer[1].close()
        self._signer = None
        self._wake.set()

    async def _active_signer(self, conn) -> tuple[uuid.UUID, CertificateSigner] | None:
        if self._signer is None:
            loaded = await signing_keys.load_active(conn, self._pii)
            if loaded is not None:
                material, key_id = loaded
                self._signer = (key_id, CertificateSigner(material, self._config.relay_signing_processes))
        return self._signer

    # --- one batch -------------------------------------------------------------------------------

    async def relay_batch(self, conn: asyncpg.Connection) -> int:
        """Relay up to RELAY_BATCH_SIZE events in one transaction; returns how many."""
        async with conn.transaction():
            rows = await repo.pending_events(conn, self._config.relay_batch_size)
            if not rows:
                return 0
            head = await repo.head_position(conn)
            previous_ids = [
                uuid.UUID(r["payload"]["previous_result_id"])
                for r in rows
                if r["kind"] == "AMENDED" and r["payload"].get("previous_result_id")
            ]
            certificate_of = dict(
                await repo.certificates_of_results(conn, previous_ids + [r["result_id"] for r in rows])
            )
            now = datetime.now(UTC).replace(microsecond=0)
            pending: list[_Pending] = []
            signer = None
            for row in rows:
                issues = row["kind"] == "RELEASED" or (
                    row["kind"] == "AMENDED" and row["payload"]["state"] == "RELEASED"
                )
                if issues and signer is None:
                    signer = await self._active_signer(conn)
                    if signer is None:
                        log.error("no ACTIVE signing key: the feed waits until an operator activates one")
                        break  # keep order: nothing after this event may be published before it
                head += 1
                pending.append(self._prepare(row, head, now, issues and row["result_id"] not in certificate_of))
            if not pending:
                return 0
            requests = [p.request for p in pending if p.request is not None]
            issued = iter(await signer[1].issue(requests)) if requests else iter(())
            batch = _Batch()
            for item in pending:
                self._assemble(
                    item, next(issued) if item.request is not None else None, signer, now, certificate_of, batch
                )
            await repo.insert_certificates(conn, batch.certificates)
            await repo.revoke_certificates(conn, batch.revocations)
            await repo.insert_feed_events(conn, batch.feed)
            await repo.mark_relayed(conn, batch.outbox_ids)
            await conn.execute("SELECT pg_notify('feed', $1)", str(head))
        for kind in (f[2] for f in batch.feed):
            RELAYED.labels(kind).inc()
        CERTIFICATES.labels("issued").inc(len(batch.certificates))
        CERTIFICATES.labels("revoked").inc(len(batch.revocations))
        self._on_published(head)
        await self._put(conn, batch.statuses, new_marked_cached=True)
        return len(batch.outbox_ids)

    def _prepare(self, row, position: int, now: datetime, issue: bool) -> _Pending:
        """The event without its certificate, and what its certificate needs (if it gets one)."""
        result = result_message(row, id_column="result_id")
        result.state = enum_value(testing_pb2.ResultState, row["payload"].get("state", row["state"]))
        person = person_message(self._pii, row)
        event = pb.ResultEvent(
            position=position,
            kind=enum_value(testing_pb2.ResultEventKind, row["kind"]),
            committed_at=timestamp(row["committed_at"]),
            published_at=timestamp(now),
            person=person,
            result=result,
        )
        request = None
        if issue:
            # Valid for a time counted from the sample; a result recorded after that window still gets
            # its certificate, one that expires at once (verifiers answer EXPIRED).
            expires = max(
                row["collected_at"] + timedelta(hours=self._config.certificate_validity_hours),
                now + timedelta(seconds=1),
            )
            request = CertificateRequest(
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
        return _Pending(row, event, request)

    def _assemble(self, item: _Pending, issued, signer, now: datetime, certificate_of: dict, batch: _Batch) -> None:
        row, event = item.row, item.event
        revoked_id = None
        old_result = None
        if row["kind"] == "AMENDED":
            old_result = uuid.UUID(row["payload"]["previous_result_id"])
        elif row["kind"] == "WITHDRAWN":
            old_result = row["result_id"]
        old = certificate_of.get(old_result) if old_result else None
        if old is not None and old["status"] == "VALID":
            revoked_id = old["id"]
            batch.revocations.append((old["id"], row["kind"]))
            certificate_of[old_result] = {**dict(old), "status": "REVOKED", "status_version": old["status_version"] + 1}
            batch.statuses.append(
                {
                    "id": old["id"],
                    "uvci": old["uvci"],
                    "status": "REVOKED",
                    "status_version": old["status_version"] + 1,
                    "expires_at": old["expires_at"],
                }
            )
            event.revoked_certificate_id = old["uvci"]
        certificate_id = None
        if isinstance(issued, str):
            # Intake let through data that cannot make a valid DCC: publish the event without a
            # certificate rather than stop the feed for everyone; operators see the error and metric.
            CERTIFICATES.labels("failed").inc()
            log.error("certificate not issued", extra={"fields": {"result_id": str(row["result_id"]), "error": issued}})
        elif issued is not None:
            certificate_id, (uvci_text, qr) = uuid.uuid4(), issued
            expires_at = datetime.fromtimestamp(item.request.expires_at, UTC)
            material = signer[1].material
            event.certificate.CopyFrom(
                certificate_pb2.Certificate(
                    certificate_id=uvci_text,
                    qr=qr,
                    status=certificate_pb2.CERTIFICATE_STATUS_VALID,
                    issued_at=timestamp(now),
                    expires_at=timestamp(expires_at),
                    result_id=str(row["result_id"]),
                    kid=material.kid,
                )
            )
            batch.certificates.append(
                (
                    certificate_id,
                    uvci_text,
                    row["result_id"],
                    row["person_id"],
                    signer[0],
                    self._pii.seal("certificate.qr", qr),
                    now,
                    expires_at,
                )
            )
            certificate_of[row["result_id"]] = {
                "id": certificate_id,
                "uvci": uvci_text,
                "status": "VALID",
                "status_version": 1,
                "expires_at": expires_at,
            }
            batch.statuses.append(
                {
                    "id": certificate_id,
                    "uvci": uvci_text,
                    "status": "VALID",
                    "status_version": 1,
                    "expires_at": expires_at,
                }
            )
        batch.feed.append(
            (
                event.position,
                row["outbox_id"],
                row["kind"],
                row["person_id"],
                row["result_id"],
                certificate_id,
                revoked_id,
                self._pii.seal_bytes("feed.event", event.SerializeToString()),
                row["committed_at"],
            )
        )
        batch.outbox_ids.append(row["outbox_id"])

    # --- Redis ---------------------------------------------------------------------------------------

    async def sync_cache(self, conn) -> None:
        """Write the statuses Redis is behind on (after a Redis outage)."""
        behind = await repo.statuses_behind_cache(conn, CACHE_SYNC_BATCH)
        if behind:
            await self._put(conn, behind, new_marked_cached=False)

    async def _put(self, conn, rows, *, new_marked_cached: bool) -> None:
        """Write statuses to Redis. New certificates are inserted already marked cached: if this write is
        lost, a verifier's cache miss reads Postgres, which is correct. Revocations stay marked behind
        until Redis confirms them, since a stale VALID in Redis would be wrong. On a Redis error every
        status of `rows` is marked behind, so the catch-up writes it once Redis is back."""
        if not rows:
            return
        try:
            await self._cache.put_many(
                [(r["uvci"], r["status"], r["status_version"], int(r["expires_at"].timestamp())) for r in rows]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            DEPENDENCY_UP.labels("publish_svc", "redis").set(0)
            log.warning(
                "Redis missed certificate statuses; will retry",
                extra={"fields": {"count": len(rows), "error": type(exc).__name__}},
            )
            await repo.mark_behind(conn, [r["id"] for r in rows])
            return
        DEPENDENCY_UP.labels("publish_svc", "redis").set(1)
        await repo.mark_cached(
            conn, [(r["id"], r["status_version"]) for r in rows if not (new_marked_cached and r["status_version"] == 1)]
        )
