"""SQL of the checkpoint-bundle builder (services.publish_svc.bundle_builder): what goes into a bundle,
and the bundle versions themselves. Plain statements over a connection the caller holds in a transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.registry.province_rules import Rule, rule_from_row

# Any constant shared by every builder; 0x62756e646c65 is "bundle". Held for the transaction that issues a
# version, so two replicas never issue the same one.
BUILD_LOCK = 0x62756E646C65


@dataclass(frozen=True, slots=True)
class TrustSource:
    certificate_der: bytes
    country: str
    own: bool


@dataclass(frozen=True, slots=True)
class BundleKeySource:
    certificate_der: bytes
    state: str


@dataclass(frozen=True, slots=True)
class LatestBundle:
    version: int
    issued_at: datetime
    content_sha256: bytes
    signing_key_id: uuid.UUID
    full_bundle: bytes


async def try_lock(conn: asyncpg.Connection, idle_timeout_s: float) -> bool:
    """Takes the build lock for this transaction, or returns False at once when another replica is building.
    The lock holder's session ends (and the lock with it) if it idles `idle_timeout_s` inside the
    transaction: a builder frozen mid-build blocks the others for that long at most."""
    await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {int(idle_timeout_s * 1000)}")
    return await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", BUILD_LOCK)


async def database_now(conn: asyncpg.Connection) -> datetime:
    """Postgres's clock, whole seconds: the same for every replica, so versions never go back in time."""
    return await conn.fetchval("SELECT date_trunc('second', now())")


async def trust_sources(conn: asyncpg.Connection) -> list[TrustSource]:
    """Our DCC keys but retired ones, and the imported certificates not removed: the trust list."""
    rows = await conn.fetch(
        """SELECT certificate_der, 'VN' AS country, true AS own FROM signing_keys
           WHERE purpose = 'DCC' AND state <> 'RETIRED'
           UNION ALL
           SELECT certificate_der, country, false FROM trusted_certificates WHERE removed_at IS NULL"""
    )
    return [TrustSource(bytes(r["certificate_der"]), r["country"], r["own"]) for r in rows]


async def rules(conn: asyncpg.Connection) -> list[Rule]:
    return [rule_from_row(r) for r in await conn.fetch("SELECT * FROM province_rules")]


async def revoked_uvcis(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """The UVCIs of revoked certificates that have not expired (an index-only scan)."""
    rows = await conn.fetch("SELECT uvci FROM certificates WHERE status = 'REVOKED' AND expires_at > $1", now)
    return [r[0] for r in rows]


async def bundle_keys(conn: asyncpg.Connection) -> list[BundleKeySource]:
    rows = await conn.fetch(
        "SELECT certificate_der, state FROM signing_keys WHERE purpose = 'BUNDLE' AND state <> 'RETIRED'"
    )
    return [BundleKeySource(bytes(r["certificate_der"]), r["state"]) for r in rows]


async def latest(conn: asyncpg.Connection) -> LatestBundle | None:
    row = await conn.fetchrow(
        """SELECT version, issued_at, content_sha256, signing_key_id, full_bundle FROM checkpoint_bundles
           ORDER BY version DESC LIMIT 1"""
    )
    if row is None:
        return None
    return LatestBundle(
        row["version"], row["issued_at"], bytes(row["content_sha256"]), row["signing_key_id"], bytes(row["full_bundle"])
    )


async def insert(
    conn: asyncpg.Connection,
    version: int,
    issued_at: datetime,
    valid_until: datetime,
    content_sha256: bytes,
    signing_key_id: uuid.UUID,
    full_bundle: bytes,
    delta: bytes | None,
) -> None:
    await conn.execute(
        """INSERT INTO checkpoint_bundles (version, issued_at, valid_until, content_sha256, signing_key_id,
                                           full_bundle, delta)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        version,
        issued_at,
        valid_until,
        content_sha256,
        signing_key_id,
        full_bundle,
        delta,
    )


async def prune(conn: asyncpg.Connection, latest_version: int, fulls_kept: int, deltas_kept: int) -> None:
    """Keep the full bundle of the newest `fulls_kept` versions and the rows (deltas) of the newest `deltas_kept`."""
    await conn.execute(
        "UPDATE checkpoint_bundles SET full_bundle = NULL WHERE version <= $1 AND full_bundle IS NOT NULL",
        latest_version - fulls_kept,
    )
    await conn.execute("DELETE FROM checkpoint_bundles WHERE version <= $1", latest_version - deltas_kept)


async def notify(conn: asyncpg.Connection) -> None:
    """Tell verify_svc (at commit) that a new version is there."""
    await conn.execute("NOTIFY checkpoint_bundle")
