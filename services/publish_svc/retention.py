"""publish_svc's retention steps (docs/retention.md): certificates' QR texts, feed payloads, the read audit.

- A certificate's sealed HC1 text holds the holder's names and birth date. It is erased (NULL) once the
  certificate was issued more than the personal-data period ago, long after it expired (the configuration
  refuses a period shorter than the certificate validity). Its id, status and validity stay: verification
  and revocation do not need the text, and rendering it is then FAILED_PRECONDITION, PERSONAL_DATA_ERASED.
- A feed event's sealed payload is redacted once relayed more than the feed-payload period ago: it is
  opened, its person replaced by the area codes with `personal_data_erased`, its certificate's QR text
  removed, and sealed again. The event keeps its position, so the feed stays gapless and a partner that
  replays from an old position receives every event, without the personal data.
- personal_data_reads rows (who read whose data) are deleted after the audit period.

Every batch locks its rows `SKIP LOCKED` and writes only rows it holds (the relay and the key rotation
never wait for it, nor it for them).
"""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from services.common.pii import PiiCipher, PiiError
from services.common.protoconv import enum_value
from services.common.retention import BatchDone, RetentionStep
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2, testing_pb2

log = logging.getLogger("covidtest.retention")


async def erase_certificate_qr(conn: asyncpg.Connection, cutoff: datetime, limit: int, _after: object) -> BatchDone:
    """Erase the QR text of up to `limit` certificates issued before `cutoff`."""
    erased = await conn.execute(
        """UPDATE certificates c SET qr_enc = NULL
           FROM (SELECT id FROM certificates WHERE qr_enc IS NOT NULL AND issued_at < $1
                 ORDER BY issued_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
           WHERE c.id = due.id""",
        cutoff,
        limit,
    )
    return BatchDone(int(erased.split()[-1]))


def redacted_payload(pii: PiiCipher, position: int, kind: str, sealed: bytes) -> bytes:
    """The sealed event without its personal data: the person reduced to the area codes, no QR text."""
    try:
        event = pb.ResultEvent.FromString(pii.open_bytes("feed.event", sealed))
    except PiiError:
        # Sealed under a key the ring no longer holds: no one can deliver it, and whoever holds that key could
        # read it. What the columns say replaces it.
        log.warning(
            "feed payload would not open; replaced by its position and kind", extra={"fields": {"position": position}}
        )
        event = pb.ResultEvent(position=position, kind=enum_value(testing_pb2.ResultEventKind, kind))
    person = event.person
    event.person.CopyFrom(
        person_pb2.Person(
            province_code=person.province_code, district_code=person.district_code, personal_data_erased=True
        )
    )
    if event.HasField("certificate"):
        event.certificate.ClearField("qr")  # names and birth date inside the HC1 payload
    return pii.seal_bytes("feed.event", event.SerializeToString())


def redact_feed_payloads(pii: PiiCipher):
    async def batch(conn: asyncpg.Connection, cutoff: datetime, limit: int, _after: object) -> BatchDone:
        """Redact up to `limit` feed events relayed before `cutoff`."""
        rows = await conn.fetch(
            """SELECT position, kind, payload_enc FROM feed_events
               WHERE redacted_at IS NULL AND relayed_at < $1
               ORDER BY relayed_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            cutoff,
            limit,
        )
        if not rows:
            return BatchDone(0)
        await conn.execute(
            """UPDATE feed_events f SET payload_enc = u.payload, redacted_at = now()
               FROM unnest($1::bigint[], $2::bytea[]) AS u(position, payload) WHERE f.position = u.position""",
            [r["position"] for r in rows],
            [redacted_payload(pii, r["position"], r["kind"], bytes(r["payload_enc"])) for r in rows],
        )
        return BatchDone(len(rows))

    return batch


async def delete_personal_data_reads(
    conn: asyncpg.Connection, cutoff: datetime, limit: int, _after: object
) -> BatchDone:
    """Delete up to `limit` read-audit rows written before `cutoff` (appended only: nothing to lock)."""
    deleted = await conn.execute(
        """DELETE FROM personal_data_reads
           WHERE id IN (SELECT id FROM personal_data_reads WHERE at < $1 ORDER BY at LIMIT $2)""",
        cutoff,
        limit,
    )
    return BatchDone(int(deleted.split()[-1]))


def steps(pii: PiiCipher) -> tuple[RetentionStep, ...]:
    return (
        RetentionStep("certificate_qr", "erased", lambda policy: policy.personal_data, erase_certificate_qr),
        RetentionStep("feed_payloads", "redacted", lambda policy: policy.feed_payload, redact_feed_payloads(pii)),
        RetentionStep("personal_data_reads", "deleted", lambda policy: policy.audit, delete_personal_data_reads),
    )
