"""The partner feed: streaming events from a position, per-partner views, cursors and status.

Events are stored once, sealed, as the serialised ResultEvent with the person; a partner's view adds
its own pseudonymous person key. A partner not granted personal data (`partners.personal_data_access`)
gets neither the person nor the certificate's QR text: the HC1 payload holds names and the birth date
in plain CBOR, so only the certificate's id, status, validity, key id and result id remain.
Every page delivered to an entitled partner leaves one `personal_data_reads` row (FEED_DELIVERY: the
result ids and the position range), written before the page is yielded: an audit row for a page the
client then failed to receive is acceptable, personal data delivered without a row is not.
A stream reads the feed in pages of at most 500 from Postgres and writes each page only when the
client has taken the previous one (grpc.aio's write waits on HTTP/2 flow control), so a slow client
never makes the server buffer more than one page. New events wake waiting streams through one
Postgres LISTEN connection per process (`FeedSignal`), with a poll as a safety net.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator

import asyncpg

from services.common import tracing
from services.common.auth import PrincipalKind
from services.common.db import CONNECTION_ERRORS, connect
from services.common.errors import FieldViolation, InvalidArgument, NotFound, OutOfRange, ResourceExhausted
from services.common.pii import PiiCipher
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb
from services.publish_svc import repository as repo
from services.publish_svc.repository import Partner

log = logging.getLogger("covidtest.feed")

PAGE = 500
SAFETY_POLL_S = 1.0


class FeedSignal:
    """Wakes every waiting stream when the feed head moves (NOTIFY feed, or the local relay)."""

    def __init__(self, dsn: str):
        self._dsn = dsn
        self._event = asyncio.Event()
        self._stopping = False

    def notify(self, *_args: object) -> None:
        """Wake the waiting streams (also a LISTEN callback, hence any arguments)."""
        self._event.set()
        self._event = asyncio.Event()  # waiters hold the old event, which stays set

    async def wait(self, timeout: float) -> None:
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def run(self) -> None:
        while not self._stopping:
            conn = None
            try:
                conn = await connect(self._dsn)
                await conn.add_listener("feed", self.notify)
                while not self._stopping and not conn.is_closed():
                    await asyncio.sleep(1)
            except CONNECTION_ERRORS:
                await asyncio.sleep(1)  # streams keep polling meanwhile
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    def stop(self) -> None:
        self._stopping = True


class Feed:
    """The feed as partners read it: streams, per-partner views, cursors, open streams per partner."""

    def __init__(self, pool: asyncpg.Pool, pii: PiiCipher, signal: FeedSignal, heartbeat_s: float, max_streams: int):
        self._pool = pool
        self._pii = pii
        self._signal = signal
        self._heartbeat = heartbeat_s
        self._max_streams = max_streams
        self.open_streams: Tally[str] = Tally()
        self._partner_keys: dict[uuid.UUID, bytes] = {}

    def person_key(self, partner_id: uuid.UUID, person_id: uuid.UUID) -> str:
        """HMAC over the internal person id with a key derived for this partner: stable per partner, unlinkable
        across partners."""
        partner_key = self._partner_keys.get(partner_id)
        if partner_key is None:
            partner_key = self._partner_keys[partner_id] = self._pii.keyed_hash("partner.person_key", str(partner_id))
        return hmac.new(partner_key, person_id.bytes, hashlib.sha256).hexdigest()

    def view(self, partner: Partner, person_id: uuid.UUID, sealed: bytes) -> pb.ResultEvent:
        """A stored event as `partner` sees it."""
        event = pb.ResultEvent.FromString(self._pii.open_bytes("feed.event", sealed))
        event.person_key = self.person_key(partner.id, person_id)
        if not partner.personal_data_access:
            event.ClearField("person")
            if event.HasField("certificate"):
                event.certificate.ClearField("qr")  # names and birth date inside the HC1 payload
        return event

    async def _audit_delivery(self, partner: Partner, events: list[pb.ResultEvent]) -> None:
        """One FEED_DELIVERY row for a page of events carrying personal data (entitled partners only)."""
        if not partner.personal_data_access or not events:
            return
        await repo.record_read(
            self._pool,
            repo.PersonalDataRead(
                principal_kind=PrincipalKind.PARTNER.value,
                principal_id=partner.id,
                purpose="FEED_DELIVERY",
                result_ids=[uuid.UUID(e.result.result_id) for e in events if e.HasField("result")],
                detail={
                    "from_position": events[0].position,
                    "to_position": events[-1].position,
                    "events": len(events),
                    # SAMPLE_REGISTERED events carry the person too, before any result exists.
                    "pending_sample_ids": [e.sample.sample_id for e in events if e.HasField("sample")],
                },
            ),
        )

    async def partner(self, partner_id: str) -> Partner:
        partner = await repo.partner(self._pool, uuid.UUID(partner_id))
        if partner is None:
            raise NotFound("no such partner", reason="PARTNER_NOT_FOUND")
        return partner

    async def stream(self, partner_id: str, from_position: int) -> AsyncIterator[pb.StreamResultEventsResponse]:
        """Yield StreamResultEventsResponse messages from `from_position` (0: after the cursor), forever."""
        # Check and take the slot with no await in between, so concurrent starts cannot both pass.
        if self.open_streams[partner_id] >= self._max_streams:
            raise ResourceExhausted(
                f"at most {self._max_streams} concurrent streams per partner", reason="STREAM_LIMIT_EXCEEDED"
            )
        self.open_streams[partner_id] += 1
        try:
            partner = await self.partner(partner_id)
            head = await repo.head_position(self._pool)
            cursor = from_position or partner.acked_position + 1
            if not 1 <= cursor <= head + 1:
                raise OutOfRange(f"from_position must be between 1 and {head + 1}", reason="POSITION_OUT_OF_RANGE")
            silent_since = asyncio.get_running_loop().time()
            while True:
                rows = await repo.feed_page(self._pool, cursor, PAGE)
                contiguous: list[asyncpg.Record] = []
                for row in rows:  # never skip: stop at a position not yet visible
                    if row["position"] != cursor + len(contiguous):
                        break
                    contiguous.append(row)
                if contiguous:
                    cursor += len(contiguous)
                    head = max(head, cursor - 1)
                    events = [self.view(partner, r["person_id"], r["payload_enc"]) for r in contiguous]
                    await self._audit_delivery(partner, events)  # before the page leaves: never unaudited
                    sending = time.time_ns()
                    yield pb.StreamResultEventsResponse(events=events, head_position=head)
                    for r in contiguous:  # each event's trace (from its intake) ends with its delivery
                        tracing.record(
                            "feed delivery", parent=r["traceparent"], started_ns=sending,
                            position=r["position"], partner_id=str(partner.id),
                        )  # fmt: skip
                    silent_since = asyncio.get_running_loop().time()
                    continue
                now = asyncio.get_running_loop().time()
                if now - silent_since >= self._heartbeat:
                    yield pb.StreamResultEventsResponse(head_position=await repo.head_position(self._pool))
                    silent_since = now
                await self._signal.wait(min(SAFETY_POLL_S, self._heartbeat))
        finally:
            self.open_streams[partner_id] -= 1

    async def acknowledge(self, conn: asyncpg.Connection, partner_id: str, position: int) -> pb.AckResultEventsResponse:
        """Move the partner's cursor to `position` (never back, never beyond the head)."""
        if position < 1:
            raise InvalidArgument("position is required", [FieldViolation("position", "at least 1", "FIELD_REQUIRED")])
        head = await repo.head_position(conn)
        if position > head:
            raise OutOfRange(f"position is beyond the feed head {head}", reason="POSITION_OUT_OF_RANGE")
        acked = await repo.advance_cursor(conn, uuid.UUID(partner_id), position)
        return pb.AckResultEventsResponse(acknowledged_position=acked, head_position=head)
