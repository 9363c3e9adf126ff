"""SQL of verify_svc: the trust snapshot, the checkpoint bundle, certificate statuses on a cache miss, verdict
counts, trust-list changes.

Plain parameterised statements over an asyncpg connection or pool that the caller holds. None of them runs
per scan on a cache hit: the trust snapshot is loaded in the background, statuses are read only when
Redis has none, verdict counts are flushed every few seconds, and trust-list changes are read for a
device's GetTrustList. Errors are the caller's to handle (each caller decides what falls back and what
retries), so nothing here catches any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.registry.province_rules import Rule, rule_from_row

# A verdict count's key: (hour, checkpoint device id, verdict).
CountKey = tuple[datetime, str, str]


@dataclass(frozen=True, slots=True)
class ImportedCertificate:
    """A signing certificate of another country on the trust list."""

    certificate_der: bytes
    country: str


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """A certificate's status as Postgres holds it (what the relay also writes to Redis)."""

    certificate_id: str  # the UVCI
    status: str  # VALID or REVOKED
    status_version: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StatusRead:
    """Statuses read from Postgres, with the feed head of the same snapshot: the refill's fence."""

    statuses: list[StoredStatus]  # those of the asked ids that Postgres knows
    feed_head: int  # the highest feed position this snapshot saw (0: an empty feed)


@dataclass(frozen=True, slots=True)
class TrustListChange:
    """The latest change of one certificate on the trust list."""

    fingerprint: str  # SHA-256 of the certificate's DER, hex
    change: str  # ADDED or REMOVED


# --- the trust snapshot (background refresh) ------------------------------------------------------


async def own_signing_certificates(conn: asyncpg.Connection) -> list[bytes]:
    """The DER certificates of this platform's signing keys, but for retired ones."""
    rows = await conn.fetch("SELECT certificate_der FROM signing_keys WHERE state <> 'RETIRED' AND purpose = 'DCC'")
    return [bytes(r["certificate_der"]) for r in rows]


async def imported_certificates(conn: asyncpg.Connection) -> list[ImportedCertificate]:
    rows = await conn.fetch("SELECT certificate_der, country FROM trusted_certificates WHERE removed_at IS NULL")
    return [ImportedCertificate(bytes(r["certificate_der"]), r["country"]) for r in rows]


async def province_rules(conn: asyncpg.Connection) -> list[Rule]:
    """Every version of every province rule (and the national defaults)."""
    return [rule_from_row(r) for r in await conn.fetch("SELECT * FROM province_rules")]


async def trust_list_version(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT COALESCE(max(version), 0) FROM trust_list_changes")


async def trust_list_changes_since(pool: asyncpg.Pool, version: int) -> list[TrustListChange]:
    """The latest change of each certificate changed after `version`."""
    rows = await pool.fetch(
        """SELECT DISTINCT ON (sha256_fingerprint) sha256_fingerprint, change FROM trust_list_changes
           WHERE version > $1 ORDER BY sha256_fingerprint, version DESC""",
        version,
    )
    return [TrustListChange(bytes(r["sha256_fingerprint"]).hex(), r["change"]) for r in rows]


# --- the checkpoint bundle (publish_svc builds it; verify_svc serves the stored bytes) ----------------------


@dataclass(frozen=True, slots=True)
class StoredBundle:
    version: int
    issued_at: datetime
    valid_until: datetime
    full_bundle: bytes


async def latest_bundle(conn: asyncpg.Connection) -> StoredBundle | None:
    row = await conn.fetchrow(
        """SELECT version, issued_at, valid_until, full_bundle FROM checkpoint_bundles
           WHERE full_bundle IS NOT NULL ORDER BY version DESC LIMIT 1"""
    )
    if row is None:
        return None
    return StoredBundle(row["version"], row["issued_at"], row["valid_until"], bytes(row["full_bundle"]))


async def bundle_deltas(conn: asyncpg.Connection, after: int, up_to: int) -> list[tuple[int, bytes]]:
    """(version, delta) of the versions in (after, up_to], oldest first."""
    rows = await conn.fetch(
        """SELECT version, delta FROM checkpoint_bundles
           WHERE version > $1 AND version <= $2 AND delta IS NOT NULL ORDER BY version""",
        after,
        up_to,
    )
    return [(r["version"], bytes(r["delta"])) for r in rows]


# --- statuses (a Redis miss) ------------------------------------------------------------------------


async def feed_head(pool: asyncpg.Pool) -> int:
    """The highest feed position committed (on the primary: what a replica must have replayed to be current)."""
    return await pool.fetchval("SELECT COALESCE(max(position), 0) FROM feed_events")


async def certificate_statuses(pool: asyncpg.Pool, certificate_ids: list[str]) -> StatusRead:
    """The statuses of those of `certificate_ids` that Postgres knows, and the feed head, in one statement
    (one snapshot, also on a read replica): every revocation is a feed event, so the head tells how
    current these statuses are."""
    rows = await pool.fetch(
        """SELECT h.head, c.uvci, c.status, c.status_version, c.expires_at
           FROM (SELECT COALESCE(max(position), 0) AS head FROM feed_events) h
           LEFT JOIN certificates c ON c.uvci = ANY($1::text[])""",
        certificate_ids,
    )
    return StatusRead(
        [StoredStatus(r["uvci"], r["status"], r["status_version"], r["expires_at"]) for r in rows if r["uvci"]],
        rows[0]["head"],
    )


# --- verdict counts --------------------------------------------------------------------------------


async def add_verification_counts(pool: asyncpg.Pool, counts: Mapping[CountKey, int]) -> None:
    """Adds `counts` to the hourly totals in one statement."""
    await pool.execute(
        """INSERT INTO verification_counts (hour, checkpoint_id, verdict, count)
           SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::int8[])
           ON CONFLICT (hour, checkpoint_id, verdict)
           DO UPDATE SET count = verification_counts.count + EXCLUDED.count""",
        *zip(*[(h, c, v, n) for (h, c, v), n in counts.items()]),
    )
