"""Caller identity: bearer tokens and mutual-TLS client certificates resolved to a principal.

Tokens are 256-bit random values shown once when issued; only SHA-256 of the token text is stored.
A client certificate is registered by its SHA-256 fingerprint (of the DER) to a principal the same
way. Resolution results are cached briefly in memory (AUTH_CACHE_SECONDS), so revocation takes effect
within that time; when Postgres is down, an entry already cached keeps working (stale) so checkpoints
keep verifying, while an unknown credential gets UNAVAILABLE rather than a false UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from enum import Enum

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common.db import CONNECTION_ERRORS
from services.common.errors import Unauthenticated, Unavailable

TOKEN_PREFIX = "ctk_"
_CACHE_LIMIT = 50_000


class Role(str, Enum):
    SAMPLER = "SAMPLER"
    LAB = "LAB"
    PARTNER = "PARTNER"
    CHECKPOINT = "CHECKPOINT"
    OPERATOR = "OPERATOR"


class PrincipalKind(str, Enum):
    ORGANISATION = "ORGANISATION"
    PARTNER = "PARTNER"
    CHECKPOINT_DEVICE = "CHECKPOINT_DEVICE"
    OPERATOR = "OPERATOR"


# Which principal may hold which role: the same rule the credentials table enforces.
ROLES_OF_KIND = {
    PrincipalKind.ORGANISATION: (Role.SAMPLER, Role.LAB),
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
       COALESCE(o.province_code, d.province_code, '') AS province_code,
       (d.disabled_at IS NOT NULL) AS disabled
FROM credentials c
LEFT JOIN organisations o ON c.principal_kind = 'ORGANISATION' AND o.id = c.principal_id
LEFT JOIN checkpoint_devices d ON c.principal_kind = 'CHECKPOINT_DEVICE' AND d.id = c.principal_id
WHERE c.secret_sha256 = $1
"""


class CredentialResolver:
    """Looks credentials up in Postgres with a short in-memory cache."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float = 10.0):
        self._pool = pool
        self._ttl = ttl_seconds
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    def fresh(self, digest: bytes) -> Principal | None:
        """The principal of a digest resolved within the cache time; None when it must be looked up
        (or was found unknown or revoked: the lookup path gives that answer)."""
        hit = self._cache.get(digest)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    async def resolve_digest(self, digest: bytes) -> Principal:
        """The principal for a token digest or certificate fingerprint; Unauthenticated if none."""
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            try:
                row = await self._pool.fetchrow(_LOOKUP, digest)
            except CONNECTION_ERRORS as exc:
                if hit is not None:  # stale but known: keep serving through a database outage
                    principal = hit[1]
                    if principal is None:
                        raise Unauthenticated("unknown or revoked credential", reason="CREDENTIAL_INVALID") from exc
                    return principal
                raise Unavailable("cannot check the credential right now; retry") from exc
            principal = _principal_from(row)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # bounded memory: random tokens must not grow the cache forever
            self._cache[digest] = (now + self._ttl, principal)
        if principal is None:
            raise Unauthenticated("unknown or revoked credential", reason="CREDENTIAL_INVALID")
        return principal

    def forget(self) -> None:
        self._cache.clear()


def _principal_from(row) -> Principal | None:
    if row is None or row["revoked"] or row["disabled"]:
        return None
    return Principal(
        credential_id=row["credential_id"],
        kind=PrincipalKind(row["principal_kind"]),
        id=row["principal_id"],
        role=Role(row["role"]),
        province_code=row["province_code"],
    )


class Authenticator:
    """Resolves the caller of one RPC: bearer token first, else the mTLS client certificate."""

    def __init__(self, resolver: CredentialResolver, mutual_tls: bool):
        self._resolver = resolver
        self._mutual_tls = mutual_tls

    def known(self, metadata) -> Principal | None:
        """The caller, without an await, when its bearer token was resolved within the cache time (the
        common case on a busy connection); None when `authenticate` must be awaited."""
        token = bearer_token(metadata)
        return self._resolver.fresh(token_digest(token)) if token else None

    async def authenticate(self, metadata, context) -> Principal:
        token = bearer_token(metadata)
        if token:
            return await self._resolver.resolve_digest(token_digest(token))
        if token is None and self._mutual_tls:
            pem = _peer_certificate(context)
            if pem:
                return await self._resolver.resolve_digest(certificate_fingerprint(pem))
        if token == "":
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'", reason="CREDENTIAL_INVALID")
        raise Unauthenticated(
            "no credential: send 'authorization: Bearer <token>' or a client certificate", reason="CREDENTIAL_MISSING"
        )


def _peer_certificate(context) -> bytes | None:
    try:
        values = context.auth_context().get("x509_pem_cert")
    except Exception:  # no transport security on this connection
        return None
    return values[0] if values else None
