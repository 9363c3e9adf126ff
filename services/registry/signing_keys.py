"""The platform's HCERT signing keys: generate or import, activate (rotate), retire, list, load.

A key's private half is sealed with the personal-data keyring (`private_key_enc`), or stays in a
mounted Kubernetes Secret that `private_key_ref` names (a file path read by publish_svc). It is never
returned by any API. Every key enters the trust list when created (PENDING: devices learn it before
it signs) and leaves it when retired. Exactly one key is ACTIVE; activating another DEACTIVATES the
previous one, which keeps verifying until its last certificate expires.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common import audit
from services.common.auth import Principal
from services.common.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.common.pii import PiiCipher
from services.hcert import keys as hkeys
from services.registry.trust_list import trust_list_change

ALGORITHMS = ("ES256", "PS256")
DEFAULT_VALIDITY = timedelta(days=365)
MIN_VALIDITY, MAX_VALIDITY = timedelta(days=1), timedelta(days=5 * 365)
_PURPOSE = "signing_key.private"


@dataclass(frozen=True)
class SigningKeyRow:
    id: str
    kid: bytes
    algorithm: str
    certificate_der: bytes
    state: str
    not_before: datetime
    not_after: datetime
    created_at: datetime
    activated_at: datetime | None
    deactivated_at: datetime | None
    retired_at: datetime | None
    certificates_signed: int
    last_certificate_expires_at: datetime | None


_SELECT = """
SELECT k.id::text, k.kid, k.algorithm, k.certificate_der, k.state, k.not_before, k.not_after, k.created_at,
       k.activated_at, k.deactivated_at, k.retired_at,
       (SELECT count(*) FROM certificates c WHERE c.signing_key_id = k.id) AS certificates_signed,
       (SELECT max(expires_at) FROM certificates c WHERE c.signing_key_id = k.id) AS last_certificate_expires_at
FROM signing_keys k"""


def _row(record) -> SigningKeyRow:
    values = dict(record)
    values["kid"], values["certificate_der"] = bytes(values["kid"]), bytes(values["certificate_der"])
    return SigningKeyRow(**values)


def _uuid(value: str, field: str = "signing_key_id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{field} is not a valid id", [FieldViolation(field, "must be a UUID")]) from None


def check_validity(validity: timedelta | None) -> timedelta:
    if validity is None:
        return DEFAULT_VALIDITY
    if not MIN_VALIDITY <= validity <= MAX_VALIDITY:
        raise InvalidArgument(
            "validity out of range", [FieldViolation("validity", "1 day to 5 years", "FIELD_OUT_OF_RANGE")]
        )
    return validity


async def get(conn, key_id: str) -> SigningKeyRow:
    record = await conn.fetchrow(_SELECT + " WHERE k.id = $1", _uuid(key_id))
    if record is None:
        raise NotFound("no signing key with that id", reason="SIGNING_KEY_NOT_FOUND")
    return _row(record)


async def _store(
    conn,
    actor: Principal | None,
    pii: PiiCipher,
    key,
    algorithm: str,
    certificate: x509.Certificate,
    private_key_ref: str | None,
    request_id: str,
    action: str,
) -> SigningKeyRow:
    der = certificate.public_bytes(Encoding.DER)
    key_id = uuid.uuid4()
    sealed = None if private_key_ref else pii.seal(_PURPOSE, hkeys.private_key_pem(key).decode("ascii"))
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO signing_keys (id, kid, algorithm, certificate_der, private_key_enc, private_key_ref,
                                             not_before, not_after)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                key_id,
                hkeys.kid_of(der),
                algorithm,
                der,
                sealed,
                private_key_ref,
                certificate.not_valid_before_utc,
                certificate.not_valid_after_utc,
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already registered", reason="CERTIFICATE_EXISTS") from None
    await trust_list_change(conn, der, "VN", "ADDED")
    await audit.record(conn, actor, action, "signing_key", str(key_id), request_id, {"algorithm": algorithm})
    return await get(conn, str(key_id))


async def generate(
    conn,
    actor: Principal | None,
    pii: PiiCipher,
    algorithm: str,
    validity: timedelta | None = None,
    request_id: str = "",
) -> SigningKeyRow:
    if algorithm not in ALGORITHMS:
        raise InvalidArgument("unknown algorithm", [FieldViolation("algorithm", "ES256 or PS256", "FIELD_REQUIRED")])
    key = hkeys.generate_private_key(algorithm)
    certificate = hkeys.make_certificate(key, algorithm, check_validity(validity))
    return await _store(conn, actor, pii, key, algorithm, certificate, None, request_id, "GENERATE_SIGNING_KEY")


def parse_private_key(pem: bytes):
    try:
        return hkeys.load_private_key_pem(pem)
    except ValueError as exc:
        raise InvalidArgument(
            f"private key not usable: {exc}",
            [FieldViolation("private_key_pem", str(exc), "PRIVATE_KEY_INVALID")],
            reason="PRIVATE_KEY_INVALID",
        ) from None


async def import_key(
    conn,
    actor: Principal | None,
    pii: PiiCipher,
    private_key_pem: bytes,
    certificate_pem: bytes | None = None,
    validity: timedelta | None = None,
    private_key_ref: str | None = None,
    request_id: str = "",
) -> SigningKeyRow:
    """Import a key; with `private_key_ref` only that path is stored and the key stays in the Secret."""
    key, algorithm = parse_private_key(private_key_pem)
    if certificate_pem:
        if validity is not None:
            raise InvalidArgument(
                "validity applies only without a certificate",
                [FieldViolation("validity", "leave unset when certificate_pem is given", "FIELD_NOT_ALLOWED")],
            )
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            raise InvalidArgument(
                "certificate_pem is not a PEM certificate",
                [FieldViolation("certificate_pem", "one PEM X.509 certificate", "CERTIFICATE_INVALID")],
                reason="CERTIFICATE_INVALID",
            ) from None
        if not hkeys.certificate_matches_key(certificate, key):
            raise InvalidArgument(
                "the certificate is not the key's",
                reason="KEY_CERTIFICATE_MISMATCH",
                violations=[
                    FieldViolation("certificate_pem", "must match the private key", "KEY_CERTIFICATE_MISMATCH")
                ],
            )
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise InvalidArgument(
                "the certificate is not valid now",
                reason="CERTIFICATE_EXPIRED",
                violations=[FieldViolation("certificate_pem", "must be valid now", "CERTIFICATE_EXPIRED")],
            )
    else:
        certificate = hkeys.make_certificate(key, algorithm, check_validity(validity))
    return await _store(
        conn, actor, pii, key, algorithm, certificate, private_key_ref, request_id, "IMPORT_SIGNING_KEY"
    )


async def activate(
    conn, actor: Principal | None, key_id: str, request_id: str = ""
) -> tuple[SigningKeyRow, SigningKeyRow | None]:
    target = await get(conn, key_id)
    now = datetime.now(UTC)
    if target.state == "ACTIVE":
        return target, None
    if target.state == "RETIRED" or not target.not_before <= now <= target.not_after:
        raise FailedPrecondition(
            "the key is retired or its certificate is not valid now", reason="SIGNING_KEY_STATE_INVALID"
        )
    previous = await conn.fetchval(
        "UPDATE signing_keys SET state = 'DEACTIVATED', deactivated_at = now()"
        " WHERE state = 'ACTIVE' RETURNING id::text"
    )
    await conn.execute("UPDATE signing_keys SET state = 'ACTIVE', activated_at = now() WHERE id = $1", _uuid(key_id))
    await conn.execute("NOTIFY signing_keys")
    await audit.record(
        conn,
        actor,
        "ACTIVATE_SIGNING_KEY",
        "signing_key",
        key_id,
        request_id,
        {"deactivated": previous} if previous else {},
    )
    return await get(conn, key_id), (await get(conn, previous) if previous else None)


async def retire(
    conn, actor: Principal | None, key_id: str, force: bool = False, request_id: str = ""
) -> SigningKeyRow:
    target = await get(conn, key_id)
    if target.state == "RETIRED":
        return target
    if target.state == "ACTIVE":
        raise FailedPrecondition("the key is active: activate another key first", reason="SIGNING_KEY_STATE_INVALID")
    if not force and target.last_certificate_expires_at and target.last_certificate_expires_at > datetime.now(UTC):
        raise FailedPrecondition(
            "certificates it signed have not expired yet (use force after a compromise)", reason="SIGNING_KEY_IN_USE"
        )
    await conn.execute(
        "UPDATE signing_keys SET state = 'RETIRED', retired_at = now(), private_key_enc = NULL, private_key_ref = NULL "
        "WHERE id = $1",
        _uuid(key_id),
    )
    await trust_list_change(conn, target.certificate_der, "VN", "REMOVED")
    await audit.record(conn, actor, "RETIRE_SIGNING_KEY", "signing_key", key_id, request_id, {"force": force})
    return await get(conn, key_id)


async def list_keys(conn, state: str | None, limit: int, after: tuple[datetime, str] | None) -> list[SigningKeyRow]:
    rows = await conn.fetch(
        _SELECT
        + """ WHERE ($1::text IS NULL OR k.state = $1)
                      AND ($2::timestamptz IS NULL OR (k.created_at, k.id) < ($2, $3::uuid))
                      ORDER BY k.created_at DESC, k.id DESC LIMIT $4""",
        state,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_row(r) for r in rows]


async def load_active(conn, pii: PiiCipher) -> tuple[hkeys.SigningKeyMaterial, uuid.UUID] | None:
    """The ACTIVE key with its private half and its row id, or None when no key is active."""
    row = await conn.fetchrow(
        "SELECT id, algorithm, certificate_der, private_key_enc, private_key_ref"
        " FROM signing_keys WHERE state = 'ACTIVE'"
    )
    if row is None:
        return None
    if row["private_key_enc"] is not None:
        pem = pii.open(_PURPOSE, row["private_key_enc"]).encode("ascii")
    else:
        with open(row["private_key_ref"], "rb") as f:  # a mounted Kubernetes Secret
            pem = f.read()
    key, _ = hkeys.load_private_key_pem(pem)
    return hkeys.SigningKeyMaterial(
        key=key, certificate=x509.load_der_x509_certificate(bytes(row["certificate_der"])), algorithm=row["algorithm"]
    ), row["id"]
