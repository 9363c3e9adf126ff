"""The trust list, the province rules and the DCC value sets, held in memory and refreshed in the background.

None is read from Postgres per request: a refresher task reloads them (services.verify_svc.repository;
the value sets with services.registry.value_sets) every TRUST_REFRESH_SECONDS and at once on a NOTIFY
(trust_list, signing_keys, province_rules, value_sets), swapping in a new immutable snapshot. If Postgres
is down or refuses the reads, the last snapshot stays in use. The same task reloads its followers (the
checkpoint bundle store) on the same connection and on their own channels.

Notifications sent while the listening connection is down are lost, so a lost connection must be noticed at
once (asyncpg's termination callback; a cheap query every few seconds for one that died without closing) and
every (re)established one starts with a reload of everything: after a Postgres restart or failover the new
bundle and trust list are served within seconds, not at the next periodic refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from prometheus_client import Counter, Gauge

from services.common.db import BACKGROUND_ERRORS, connect
from services.hcert import keys as hkeys
from services.registry.province_rules import Rule
from services.registry.value_sets import CurrentValueSets, load_current
from services.verify_svc import repository

log = logging.getLogger("covidtest.trust")
# When this process last read the trust list, rules and value sets (at least every TRUST_REFRESH_SECONDS
# while Postgres answers): an old value means the process verifies with what it read then.
TRUST_LIST_LOADED = Gauge("covidtest_trust_list_loaded_seconds", "When the trust list was last loaded (Unix time)")
TRUST_ENTRIES_SKIPPED = Counter(
    "covidtest_trust_entries_skipped_total", "Trust list certificates skipped at load because they are unusable"
)

# How often the listening connection is checked while no notification comes, and how long the check may take:
# a dead connection is noticed within their sum, and the store then reconnects and reloads everything.
LIVENESS_CHECK_SECONDS = 5.0
LIVENESS_TIMEOUT_SECONDS = 5.0
RELOAD_TIMEOUT_SECONDS = 60.0  # one reload of everything (the pool's statements may take 30 s each)
CLOSE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class TrustedKey:
    kid: bytes
    certificate_der: bytes
    public_key: CertificatePublicKeyTypes
    country: str
    not_before: datetime
    not_after: datetime
    allowed_entry_types: tuple[str, ...]  # empty: all
    algorithm: str
    own: bool  # one of this platform's keys: its certificates have a live status
    fingerprint: str  # SHA-256 of the DER, hex: worked out once, compared on every scan


def trusted_key(der: bytes, country: str, own: bool) -> TrustedKey:
    cert = x509.load_der_x509_certificate(der)
    return TrustedKey(
        kid=hkeys.kid_of(der),
        certificate_der=der,
        public_key=cert.public_key(),
        country=country,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        allowed_entry_types=tuple(hkeys.allowed_entry_types(cert)),
        algorithm=hkeys.verification_algorithm(cert.public_key()),
        own=own,
        fingerprint=hashlib.sha256(der).hexdigest(),
    )


class Snapshot:
    """An immutable view: keys by kid, rules by (province, entry type, test type), and the current value sets
    (None where none are known: the offline verifier, whose bundle carries no device list)."""

    def __init__(
        self,
        keys: list[TrustedKey],
        rules: list[Rule],
        trust_version: int,
        value_sets: CurrentValueSets | None = None,
    ):
        self.by_kid: dict[bytes, tuple[TrustedKey, ...]] = {}
        for key in keys:
            self.by_kid[key.kid] = self.by_kid.get(key.kid, ()) + (key,)
        self.keys = tuple(keys)
        self.trust_version = trust_version
        self.rules: dict[tuple[str, str, str | None], tuple[Rule, ...]] = {}
        for rule in sorted(rules, key=lambda r: (r.effective_from, r.version), reverse=True):
            scope = (rule.province_code, rule.entry_type, rule.test_type)
            self.rules[scope] = self.rules.get(scope, ()) + (rule,)
        self.ruleset_version = max((r.version for r in rules), default=0)
        self.value_sets = value_sets

    def rule_for(self, province: str, entry_type: str, test_type: str | None, at: datetime) -> Rule | None:
        """The applicable version: the province's rule if it has one in effect, else the national default.
        A disabled version counts as a rule (and so rejects)."""
        for scope in (province, "00"):
            for rule in self.rules.get((scope, entry_type, test_type), ()):
                if rule.effective_from <= at:
                    return rule
        return None

    def next_rule_change(
        self, province: str, entry_type: str, test_type: str | None, after: datetime
    ) -> datetime | None:
        """The first time after `after` when `rule_for` may choose another version: the earliest
        effective_from later than `after` in the province's versions or the national defaults."""
        later = [
            rule.effective_from
            for scope in (province, "00")
            for rule in self.rules.get((scope, entry_type, test_type), ())
            if rule.effective_from > after
        ]
        return min(later, default=None)

    def province_rules(self, province: str) -> list[Rule]:
        """Every version a device of `province` may need offline: its own and the national defaults."""
        return [r for (p, _, _), versions in self.rules.items() if p in (province, "00") for r in versions]


def usable_key(der: bytes, country: str, own: bool) -> TrustedKey | None:
    """`trusted_key`, or None (logged, counted) for a certificate that cannot verify anything here: an
    unreadable one or a key type no DCC algorithm uses (Ed25519, say), which import refuses but the
    database may hold anyway. One such entry must not stop the rest of the trust list from loading."""
    try:
        return trusted_key(der, country, own)
    except Exception as exc:  # noqa: BLE001 - whatever parsing an odd certificate raises
        TRUST_ENTRIES_SKIPPED.inc()
        log.warning(
            "trust list entry skipped: unusable certificate",
            extra={
                "fields": {
                    "sha256_fingerprint": hashlib.sha256(der).hexdigest(),
                    "country": country,
                    "error": f"{type(exc).__name__}: {exc}"[:200],
                }
            },
        )
        return None


async def load_snapshot(conn: asyncpg.Connection, value_sets: CurrentValueSets | None = None) -> Snapshot:
    """Our signing keys (country VN, live status) and the imported certificates, the rules, the trust-list version
    and the current value sets (`value_sets`, the ones held, is reused for each set whose version is unchanged)."""
    found = [usable_key(der, "VN", True) for der in await repository.own_signing_certificates(conn)]
    found += [usable_key(c.certificate_der, c.country, False) for c in await repository.imported_certificates(conn)]
    keys = [key for key in found if key is not None]
    rules = await repository.province_rules(conn)
    version = await repository.trust_list_version(conn)
    return Snapshot(keys, rules, version, await load_current(conn, value_sets))


async def _close(conn: asyncpg.Connection) -> None:
    """Gracefully when the server answers; a dead or wedged one would never acknowledge, so drop it then."""
    try:
        await conn.close(timeout=CLOSE_TIMEOUT_SECONDS)
    except BACKGROUND_ERRORS:
        conn.terminate()


class Follower(Protocol):
    """Something else verify_svc holds in memory from Postgres, reloaded with the trust list."""

    channels: tuple[str, ...]  # NOTIFY channels that mean "reload now"

    async def reload(self, conn: asyncpg.Connection) -> None: ...


class TrustStore:
    """Holds the current Snapshot; `run()` keeps it and its followers fresh."""

    channels = ("trust_list", "signing_keys", "province_rules", "value_sets")

    def __init__(self, dsn: str, refresh_seconds: float, followers: Sequence[Follower] = ()):
        self._dsn = dsn
        self._refresh = refresh_seconds
        self._followers = tuple(followers)
        self._wake = asyncio.Event()
        self._fired: set[str] = set()  # channels notified since the last reload
        self._stopping = False
        self.snapshot = Snapshot([], [], 0)
        self.loaded = asyncio.Event()

    async def reload(self, conn: asyncpg.Connection) -> None:
        self.snapshot = await load_snapshot(conn, self.snapshot.value_sets)
        self.loaded.set()
        TRUST_LIST_LOADED.set_to_current_time()

    async def run(self) -> None:
        while not self._stopping:
            conn = None
            failed = unresponsive = False
            try:
                conn = await connect(self._dsn)
                # Postgres dying closes this connection without a word to the loop below, which would otherwise
                # sleep until the next periodic refresh (minutes): wake it to reconnect at once.
                conn.add_termination_listener(self._lost)
                channels = {c for f in self._followers for c in f.channels}.union(self.channels)
                # Whatever was notified on an earlier connection is covered by the full reload below.
                self._fired.clear()
                self._wake.clear()
                for channel in sorted(channels):
                    await conn.add_listener(channel, self._notified)
                await self._follow(conn, channels)
                if not self._stopping:
                    log.warning("trust list connection lost; reconnecting")
            except BACKGROUND_ERRORS as exc:
                failed = True
                unresponsive = isinstance(exc, TimeoutError)
                log.warning(
                    "trust list refresh failed; keeping the last one", extra={"fields": {"error": type(exc).__name__}}
                )
            except Exception as exc:  # noqa: BLE001 - the refresh must outlive any one bad reload
                failed = True
                log.error(
                    "trust list refresh failed unexpectedly; keeping the last one",
                    extra={"fields": {"error": type(exc).__name__}},
                )
            finally:
                if conn is not None and not conn.is_closed():
                    # One that stopped answering would not acknowledge a graceful close either.
                    if unresponsive:
                        conn.terminate()
                    else:
                        await _close(conn)
            if failed:
                await asyncio.sleep(min(self._refresh, 2.0))

    async def _follow(self, conn: asyncpg.Connection, channels: set[str]) -> None:
        """Reloads on `conn` (which LISTENs on `channels`) until it is lost or the store stops. Everything is
        reloaded first: notifications sent while no connection listened (Postgres restarting, a failover)
        are lost, and this connection may be the first to see a new primary."""
        loop = asyncio.get_running_loop()
        fired = channels
        next_refresh = loop.time() + self._refresh
        while not self._stopping and not conn.is_closed():
            # A reload on a connection whose server vanished without closing TCP would wait forever.
            async with asyncio.timeout(RELOAD_TIMEOUT_SECONDS):
                # Only what a notification named: a new bundle version every few seconds must not
                # rebuild the trust snapshot (and drop the verdicts kept for repeat scans with it).
                if fired & set(self.channels):
                    await self.reload(conn)
                for follower in self._followers:
                    if fired & set(follower.channels):
                        await follower.reload(conn)
            fired = set()
            while not fired and not self._stopping and not conn.is_closed():
                now = loop.time()
                if now >= next_refresh:
                    # Every TRUST_REFRESH_SECONDS everything, however many notifications came meanwhile.
                    fired, next_refresh = channels, now + self._refresh
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), min(LIVENESS_CHECK_SECONDS, next_refresh - now))
                except TimeoutError:
                    if loop.time() < next_refresh:
                        # A server killed behind a proxy or a dead network may never close the socket, and
                        # a LISTEN-only connection sends nothing that would find out: ask it something cheap.
                        await conn.fetchval("SELECT 1", timeout=LIVENESS_TIMEOUT_SECONDS)
                self._wake.clear()
                fired, self._fired = self._fired, set()

    def _lost(self, _conn: object) -> None:
        self._wake.set()

    def _notified(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        self._fired.add(channel)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
