"""Caller identity: bearer tokens and mutual-TLS client certificates resolved to a principal.

Tokens are 256-bit random values shown once when issued; only SHA-256 of the token text is stored.
A client certificate is registered by its SHA-256 fingerprint (of the DER) to a principal the same
way. Resolution results are cached briefly in memory (AUTH_CACHE_SECONDS), so revocation takes effect
within that time. A lookup waits at most AUTH_DB_TIMEOUT_SECONDS, and concurrent calls presenting the
same credential share one lookup. When Postgres is slow (the lookup times out) or down, a credential
resolved before is answered from its last resolution (stale, so checkpoints keep verifying): a
principal until its expiry, a refusal stays a refusal; a credential never resolved gets UNAVAILABLE
rather than a false UNAUTHENTICATED. A credential's expiry is checked on every call, cached or not.

Unknown credentials cost the caller, not the known ones. Principals and refusals are cached apart: a
refusal (a token that resolves to nothing, a revoked or disabled credential) goes to its own bounded
cache, so a flood of random tokens never evicts a principal, and the principal cache, filled only by
credentials that resolved, drops its least recently resolved entry when full, never everything. A
lookup of a credential not resolved to a principal before is rate limited per client address (a token
bucket per peer, AUTH_UNKNOWN_LOOKUPS_PER_SECOND with AUTH_UNKNOWN_LOOKUP_BURST); beyond it the call is
RESOURCE_EXHAUSTED (RATE_LIMITED, with RetryInfo) without a database read. A known caller, fresh or
due for its periodic re-check, never meets that limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import ipaddress
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import unquote

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common.db import CONNECTION_ERRORS
from services.common.errors import ResourceExhausted, Unauthenticated, Unavailable
from services.common.metrics import CREDENTIAL_LOOKUPS

TOKEN_PREFIX = "ctk_"
_CACHE_LIMIT = 50_000  # principals: only credentials that resolved can fill it
_REFUSED_LIMIT = 10_000  # refusals: what random tokens fill, bounded apart from the principals
_PEER_LIMIT = 10_000  # client addresses whose unknown-credential budget is remembered


class Role(str, Enum):
    SAMPLER = "SAMPLER"
    LAB = "LAB"
    PARTNER = "PARTNER"
    CHECKPOINT = "CHECKPOINT"
    OPERATOR = "OPERATOR"
    HEALTH_AUTHORITY = "HEALTH_AUTHORITY"


class PrincipalKind(str, Enum):
    ORGANISATION = "ORGANISATION"
    PARTNER = "PARTNER"
    CHECKPOINT_DEVICE = "CHECKPOINT_DEVICE"
    OPERATOR = "OPERATOR"


# Which principal may hold which role: the same rule the credentials table enforces.
ROLES_OF_KIND = {
    PrincipalKind.ORGANISATION: (Role.SAMPLER, Role.LAB, Role.HEALTH_AUTHORITY),
    PrincipalKind.PARTNER: (Role.PARTNER,),
    PrincipalKind.CHECKPOINT_DEVICE: (Role.CHECKPOINT,),
    PrincipalKind.OPERATOR: (Role.OPERATOR,),
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. `id` scopes what it may touch: its organisation, partner or device."""

    credential_id: str
    kind: PrincipalKind
    id: str
    role: Role
    province_code: str = ""  # organisations and checkpoint devices
    # When the credential stops working (Unix time; inf: never). Carried with the principal so a cached
    # resolution is refused at this instant, not when the cache entry ends.
    expires_at: float = field(default=math.inf, compare=False)
    _label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every call logs under this label; a resolved principal is reused, so build it once.
        object.__setattr__(self, "_label", f"{self.kind.value}:{self.id}/{self.role.value}")

    def label(self) -> str:
        """Safe for logs: kinds and ids only."""
        return self._label


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal_obj", default=None)


def current_caller() -> Principal:
    """The principal of the call being served. The call guard sets it before any handler runs, so it is
    missing only in code run outside a guarded call, which is refused rather than served."""
    principal = current_principal.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def new_token() -> str:
    """A fresh 256-bit bearer token. Show it once; store only `token_digest(token)`."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def certificate_fingerprint(cert: bytes) -> bytes:
    """SHA-256 over the DER of a PEM or DER certificate."""
    if cert.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert).public_bytes(Encoding.DER)
    return hashlib.sha256(cert).digest()


def bearer_token(metadata) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""  # present but not a bearer token: treated like an unknown credential
    return None


_LOOKUP = """
SELECT c.id::text AS credential_id, c.principal_kind, c.principal_id::text AS principal_id, c.role,
       (c.revoked_at IS NOT NULL OR c.expires_at <= now()) AS revoked,
       EXTRACT(EPOCH FROM c.expires_at)::float8 AS expires_at,
       COALESCE(o.province_code, d.province_code, '') AS province_code,
       (d.disabled_at IS NOT NULL) AS disabled
FROM credentials c
LEFT JOIN organisations o ON c.principal_kind = 'ORGANISATION' AND o.id = c.principal_id
LEFT JOIN checkpoint_devices d ON c.principal_kind = 'CHECKPOINT_DEVICE' AND d.id = c.principal_id
WHERE c.secret_sha256 = $1
"""


class _Unreachable:
    """What a lookup that could not reach Postgres in time answers for a credential never resolved before."""


_UNREACHABLE = _Unreachable()


class CredentialResolver:
    """Looks credentials up in Postgres with a short in-memory cache, one lookup per credential at a time.

    Principals and refusals are cached apart. A principal entry is (fresh until, on the monotonic clock;
    the principal); it outlives its freshness on purpose: it is the last good resolution a slow or
    unreachable Postgres falls back on. A refusal entry (a credential found unknown, revoked or disabled)
    is its fresh-until time alone. Random tokens can only ever fill the refusal cache."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float = 10.0, db_timeout_seconds: float = 0.5):
        self._pool = pool
        self._ttl = ttl_seconds
        self._db_timeout = db_timeout_seconds
        # Both in resolution order (an entry resolved again moves to the end), so the first entry is the
        # one resolved longest ago: the one dropped when the cache is full.
        self._known: dict[bytes, tuple[float, Principal]] = {}
        self._refused: dict[bytes, float] = {}
        # The one lookup in flight per digest, which concurrent calls presenting it all await.
        self._lookups: dict[bytes, asyncio.Task[Principal | None | _Unreachable]] = {}

    def fresh(self, digest: bytes) -> Principal | None:
        """The principal of a digest resolved within the cache time and not expired; None when it must
        be looked up (or was found unknown, revoked or expired: `resolve_digest` gives that answer)."""
        hit = self._known.get(digest)
        if hit is None or hit[0] <= time.monotonic():
            return None
        principal = hit[1]
        return principal if principal.expires_at > time.time() else None

    async def resolve_digest(self, digest: bytes, throttle: Callable[[], float] | None = None) -> Principal:
        """The principal for a token digest or certificate fingerprint; Unauthenticated if none or
        expired, Unavailable if it was never resolved and Postgres cannot answer in time.

        `throttle` is asked before a database lookup of a digest that never resolved to a principal
        here: it answers 0 to allow the lookup, else the seconds until the caller may try again, and
        the call is ResourceExhausted without touching the database. Known digests never ask it."""
        now = time.monotonic()
        hit = self._known.get(digest)
        if hit is not None and hit[0] > now:
            principal: Principal | None = hit[1]
        elif hit is None and self._refused.get(digest, 0.0) > now:  # a refusal, fresh
            principal = None
        else:
            lookup = self._lookups.get(digest)
            if lookup is None:
                if hit is None and throttle is not None and (wait := throttle()) > 0:
                    CREDENTIAL_LOOKUPS.labels("throttled").inc()
                    raise ResourceExhausted(
                        "too many unknown credentials from this address; retry later",
                        reason="RATE_LIMITED",
                        retry_after_s=wait,
                    )
                lookup = self._lookups[digest] = asyncio.create_task(self._look_up(digest))
                lookup.add_done_callback(lambda task: self._lookup_done(digest, task))
            # Shielded: a caller giving up (its deadline) must not cancel the lookup others share.
            outcome = await asyncio.shield(lookup)
            if isinstance(outcome, _Unreachable):
                raise Unavailable("cannot check the credential right now; retry")
            principal = outcome
        if principal is None:
            raise Unauthenticated("unknown or revoked credential", reason="CREDENTIAL_INVALID")
        if principal.expires_at <= time.time():
            raise Unauthenticated("the credential has expired", reason="CREDENTIAL_INVALID")
        return principal

    async def _look_up(self, digest: bytes) -> Principal | None | _Unreachable:
        """One database read for `digest`, stored in the cache for every caller waiting on it."""
        fetch = asyncio.ensure_future(self._pool.fetchrow(_LOOKUP, digest))
        try:
            # Not asyncio.timeout: a fetch cancelled there still releases (resets) its connection before
            # the cancellation ends, one more round trip to the slow database. This waits for the read
            # only; an abandoned read cleans up in the background.
            await asyncio.wait((fetch,), timeout=self._db_timeout)
            if not fetch.done():
                fetch.cancel()
                fetch.add_done_callback(_retrieve)
                raise TimeoutError
            row = fetch.result()
        except CONNECTION_ERRORS:  # includes TimeoutError: slow is treated like down
            CREDENTIAL_LOOKUPS.labels("unreachable").inc()
            # Known: keep its last resolution for another cache period, so the calls that follow are
            # admitted at once (on the hot path) instead of each waiting out the timeout again. Expiry
            # is still checked on every call; a refusal stays a refusal.
            until = time.monotonic() + self._ttl
            stale = self._known.get(digest)
            if stale is not None:
                self._remember(digest, until, stale[1])
                return stale[1]
            if digest in self._refused:
                self._remember(digest, until, None)
                return None
            return _UNREACHABLE
        principal = _principal_from(row)
        CREDENTIAL_LOOKUPS.labels("refused" if principal is None else "found").inc()
        self._remember(digest, time.monotonic() + self._ttl, principal)
        return principal

    def _remember(self, digest: bytes, until: float, principal: Principal | None) -> None:
        """Caches a resolution at the end of its cache (the most recently resolved), dropping the entry
        resolved longest ago when that cache is full: never a principal for a refusal, never all."""
        if principal is None:
            self._known.pop(digest, None)  # revoked or disabled since
            cache: dict = self._refused
            entry: object = until
            limit = _REFUSED_LIMIT
        else:
            self._refused.pop(digest, None)
            cache, entry, limit = self._known, (until, principal), _CACHE_LIMIT
        cache.pop(digest, None)
        while len(cache) >= limit:
            del cache[next(iter(cache))]
        cache[digest] = entry

    def _lookup_done(self, digest: bytes, task: asyncio.Task) -> None:
        if self._lookups.get(digest) is task:
            del self._lookups[digest]
        _retrieve(task)  # every caller waiting on it may have gone (their deadlines)

    def forget(self) -> None:
        self._known.clear()
        self._refused.clear()


class PeerRateLimiter:
    """A token bucket per client address: `rate` per second with bursts of `burst`, in memory.

    At most `_PEER_LIMIT` addresses are remembered; beyond, the one used longest ago is forgotten (its
    next attempt starts with a full bucket). IPv6 addresses count per /64, the block one host usually
    holds, so a host cannot get a fresh budget per address."""

    def __init__(self, rate: float, burst: int):
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}  # peer → (tokens, at), least recently used first

    def take(self, peer: str) -> float:
        """0 when `peer` may do one more lookup now (and it is counted), else the seconds until it may."""
        now = time.monotonic()
        tokens, at = self._buckets.pop(peer, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        while len(self._buckets) >= _PEER_LIMIT:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[peer] = (tokens, now)
        return wait


def peer_address(peer: str | None) -> str:
    """The client's address of a grpc `context.peer()` ("ipv4:10.0.0.7:53211", "ipv6:[2001:db8::1]:53211"),
    without the port; an IPv6 address as its /64. Anything else (a Unix socket) as it is."""
    if not peer:
        return ""
    family, _, rest = peer.partition(":")
    rest = unquote(rest)
    try:
        if family == "ipv4":
            return str(ipaddress.IPv4Address(rest.rsplit(":", 1)[0]))
        if family == "ipv6":
            address = ipaddress.IPv6Address(rest.rsplit(":", 1)[0].strip("[]").split("%", 1)[0])
            if address.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
    except ValueError:
        pass
    return peer


def _retrieve(task: asyncio.Future) -> None:
    """Collects an abandoned task's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _principal_from(row) -> Principal | None:
    if row is None or row["revoked"] or row["disabled"]:
        return None
    expires_at = row["expires_at"]
    return Principal(
        credential_id=row["credential_id"],
        kind=PrincipalKind(row["principal_kind"]),
        id=row["principal_id"],
        role=Role(row["role"]),
        province_code=row["province_code"],
        expires_at=math.inf if expires_at is None else expires_at,
    )


class Authenticator:
    """Resolves the caller of one RPC: bearer token first, else the mTLS client certificate.

    With `unknown_limiter`, lookups of credentials never resolved to a principal are rate limited per
    client address (`peer_address(context.peer())`)."""

    def __init__(self, resolver: CredentialResolver, mutual_tls: bool, unknown_limiter: PeerRateLimiter | None = None):
        self._resolver = resolver
        self._mutual_tls = mutual_tls
        self._limiter = unknown_limiter

    def known(self, metadata) -> Principal | None:
        """The caller, without an await, when its bearer token was resolved within the cache time (the
        common case on a busy connection); None when `authenticate` must be awaited."""
        token = bearer_token(metadata)
        return self._resolver.fresh(token_digest(token)) if token else None

    async def authenticate(self, metadata, context) -> Principal:
        token = bearer_token(metadata)
        if token:
            return await self._resolver.resolve_digest(token_digest(token), self._throttle(context))
        if token is None and self._mutual_tls:
            pem = _peer_certificate(context)
            if pem:
                return await self._resolver.resolve_digest(certificate_fingerprint(pem), self._throttle(context))
        if token == "":
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'", reason="CREDENTIAL_INVALID")
        raise Unauthenticated(
            "no credential: send 'authorization: Bearer <token>' or a client certificate", reason="CREDENTIAL_MISSING"
        )

    def _throttle(self, context) -> Callable[[], float] | None:
        """Takes one unknown-credential lookup from the caller's address, asked only when one is due."""
        limiter = self._limiter
        if limiter is None:
            return None
        return lambda: limiter.take(peer_address(context.peer()))


def _peer_certificate(context) -> bytes | None:
    try:
        values = context.auth_context().get("x509_pem_cert")
    except Exception:  # no transport security on this connection
        return None
    return values[0] if values else None
