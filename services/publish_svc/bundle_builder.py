"""Issues the checkpoint bundle's versions (services.registry.checkpoint_bundle) from Postgres.

Every BUNDLE_BUILD_SECONDS each relay replica gathers what a device needs — the trust list, every rule
version, the value sets, the revoked unexpired certificates, the bundle keys — under an advisory lock,
and issues a new version when that content differs from the latest version's, when another bundle key
became active, or when the latest is older than BUNDLE_REISSUE_SECONDS (so `valid_until`, issued_at plus
BUNDLE_VALIDITY_SECONDS, stays ahead of a device that keeps syncing). A version is signed twice by the
active bundle key: in full, and as the delta from the previous version. A revocation the relay commits
is therefore in a bundle within one build interval (the test measures it through AmendResult).

No active bundle key: nothing is issued (logged once) and devices keep the last version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Gauge, Histogram

from services.common.db import BACKGROUND_ERRORS, in_tx
from services.common.errors import Unavailable
from services.common.pii import PiiCipher
from services.hcert.codec import Signer
from services.publish_svc import bundle_repository as repo
from services.registry import checkpoint_bundle as cb
from services.registry import signing_keys
from services.registry.key_sealing import SigningKeyOpener
from services.registry.value_sets import RAT_DEVICES, load_current

log = logging.getLogger("covidtest.bundle")
BUNDLE_VERSION = Gauge("covidtest_bundle_version", "The latest checkpoint bundle version this process issued")
BUNDLE_REVOKED = Gauge("covidtest_bundle_revoked", "Revoked certificates listed in the latest bundle built here")
BUNDLE_BUILD = Histogram(
    "covidtest_bundle_build_seconds",
    "Time to gather the bundle's content and, when it changed, sign and store a version",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_RETRIED: tuple[type[BaseException], ...] = (*BACKGROUND_ERRORS, Unavailable)  # Postgres down or refusing
FULLS_KEPT = 3  # verify_svc loads the newest; one or two older survive a reader racing a prune
LOCK_IDLE_TIMEOUT_S = 30.0  # a builder frozen inside its transaction loses the build lock after this


class BundleBuilder:
    def __init__(
        self,
        pool: asyncpg.Pool,
        opener: SigningKeyOpener,
        legacy: PiiCipher | None,
        *,
        build_seconds: float,
        validity: timedelta,
        reissue: timedelta,
        deltas_kept: int,
        lock_idle_timeout_s: float = LOCK_IDLE_TIMEOUT_S,
    ):
        self._pool = pool
        self._opener = opener
        self._legacy = legacy
        self._build_s = build_seconds
        self._validity = validity
        self._reissue = reissue
        self._deltas_kept = deltas_kept
        self._lock_idle_timeout_s = lock_idle_timeout_s
        self._stopping = asyncio.Event()
        self._warned_no_key = False

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.build()
            except _RETRIED as exc:
                log.warning("bundle not built; retrying", extra={"fields": {"error": type(exc).__name__}})
            except Exception as exc:  # noqa: BLE001 - the builder must outlive any one bad build
                log.error("bundle build failed unexpectedly", extra={"fields": {"error": type(exc).__name__}})
            try:
                await asyncio.wait_for(self._stopping.wait(), self._build_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()

    async def build(self) -> int | None:
        """One build: the new version's number, or None when nothing was issued (no change, no key, or
        another replica building at this moment)."""
        started = time.perf_counter()
        issued = await in_tx(self._pool, self._build_locked)
        BUNDLE_BUILD.observe(time.perf_counter() - started)
        return issued

    async def _build_locked(self, conn: asyncpg.Connection) -> int | None:
        if not await repo.try_lock(conn, self._lock_idle_timeout_s):
            return None  # another replica is building; the next tick looks again
        now = await repo.database_now(conn)
        key = await signing_keys.load_active(conn, self._opener, self._legacy, purpose=signing_keys.BUNDLE)
        if key is None:
            if not self._warned_no_key:
                log.warning("no active bundle key: no checkpoint bundle is issued (see docs/checkpoint-bundle.md)")
                self._warned_no_key = True
            return None
        self._warned_no_key = False
        content = await gather(conn, now)
        digest = cb.content_digest(content)
        latest = await repo.latest(conn)
        if (
            latest is not None
            and latest.content_sha256 == digest
            and latest.signing_key_id == key.key_id
            and now - latest.issued_at < self._reissue
        ):
            return None
        version = latest.version + 1 if latest else 1
        valid_until = now + self._validity
        signer = Signer(key.material)
        full = cb.sign(signer, cb.full_payload(version, now, valid_until, content))
        delta = None
        if latest is not None:
            # Its own previous version, stored in this transaction's database: hashed when it was made.
            previous = cb.parse_bundle(cb.payload_of(latest.full_bundle), check_digest=False).content
            delta = cb.sign(signer, cb.delta_payload(version, now, valid_until, previous, content))
        await repo.insert(conn, version, now, valid_until, digest, key.key_id, full, delta)
        await repo.prune(conn, version, FULLS_KEPT, self._deltas_kept)
        await repo.notify(conn)
        BUNDLE_VERSION.set(version)
        BUNDLE_REVOKED.set(len(content[cb.REVOKED]))
        log.info(
            "checkpoint bundle issued",
            extra={"fields": {"version": version, "revoked": len(content[cb.REVOKED]), "bytes": len(full)}},
        )
        return version


async def gather(conn: asyncpg.Connection, now: datetime) -> cb.Content:
    """What version `now` of the bundle holds, read in the caller's transaction."""
    trust = [e for t in await repo.trust_sources(conn) if (e := _trust_entry(t)) is not None]
    rules = [cb.rule_entry(r) for r in await repo.rules(conn)]
    revoked = cb.revocation_hashes(await repo.revoked_uvcis(conn, now))
    keys = [cb.bundle_key_entry(k.certificate_der, k.state) for k in await repo.bundle_keys(conn)]
    devices = (await load_current(conn)).sets.get(RAT_DEVICES)  # the imported list, or the shipped one
    active = (
        {code: str(v.get("display", "")) for code, v in devices.values.items() if v.get("active") is True}
        if devices is not None
        else None
    )
    return cb.content_of(trust, rules, cb.value_set_entries(active), revoked, keys)


def _trust_entry(source: repo.TrustSource) -> dict | None:
    """The entry, or None for a certificate no device could verify with (verify_svc skips it too)."""
    try:
        return cb.trust_entry(source.certificate_der, source.country, source.own)
    except Exception:  # noqa: BLE001 - whatever parsing an odd certificate raises
        log.warning("trust list entry left out of the bundle: unusable certificate")
        return None
