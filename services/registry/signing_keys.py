"""The platform's signing keys: generate or import, activate (rotate), retire, list, load.

Two purposes share one lifecycle: DCC keys sign HCERT certificates; BUNDLE keys sign the checkpoint
bundle (services.registry.checkpoint_bundle), which devices pin. A bundle key is never on the trust list,
so it can never make a certificate verify; each purpose has its own ACTIVE key.

A key's private half is sealed with the signing-key KEK (`private_key_enc`, services.registry.key_sealing:
whoever creates keys holds only the KEK's public half, publish_svc alone can open it), or stays in a
mounted Kubernetes Secret that `private_key_ref` names (a file path read by publish_svc). Keys sealed
before the KEK existed (with the personal-data keyring) still open while publish_svc holds that keyring. It is never
returned by any API. Every key enters the trust list when created (PENDING: devices learn it before
it signs) and leaves it when retired. Exactly one key is ACTIVE; activating another DEACTIVATES the
previous one, which keeps verifying until its last certificate expires. The SQL is in
`repository.signing_keys`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common import audit
from services.common.auth import Principal
from services.common.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.common.pii import PiiCipher
from services.hcert import keys as hkeys
from services.registry.key_sealing import SigningKeyOpener, SigningKeySealer, is_kek_sealed
from services.registry.page_keys import CreatedPageKey
from services.registry.repository import signing_keys as repo
from services.registry.trust_list import trust_list_change

ALGORITHMS = ("ES256", "PS256")
DCC, BUNDLE = "DCC", "BUNDLE"
PURPOSES = (DCC, BUNDLE)
_COMMON_NAMES = {DCC: "Bluezone test-result DSC", BUNDLE: "Bluezone checkpoint bundle signer"}
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
    purpose: str  # DCC or BUNDLE
    certificates_signed: int
    last_certificate_expires_at: datetime | None


class Activation(NamedTuple):
    activated: SigningKeyRow
    deactivated: SigningKeyRow | None  # the key that was ACTIVE before, if another was


class ActiveSigningKey(NamedTuple):
    material: hkeys.SigningKeyMaterial
    key_id: uuid.UUID  # the signing_keys row (certificates record which key signed them)


def _row(record: asyncpg.Record) -> SigningKeyRow:
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


async def get(conn: asyncpg.Connection, key_id: str) -> SigningKeyRow:
    record = await repo.key(conn, _uuid(key_id))
    if record is None:
        raise NotFound("no signing key with that id", reason="SIGNING_KEY_NOT_FOUND")
    return _row(record)


def _sealed_private_key(
    sealer: SigningKeySealer | None, key: hkeys.PrivateKey, private_key_ref: str | None
) -> bytes | None:
    """The private half sealed for the database, or None when it stays in the Secret `private_key_ref` names."""
    if private_key_ref:
        return None
    if sealer is None:
        raise ValueError("a private key kept in the database is sealed with the signing-key KEK")
    return sealer.seal(hkeys.private_key_pem(key))


async def _store(
    conn: asyncpg.Connection,
    actor: Principal | None,
    sealer: SigningKeySealer | None,
    key: hkeys.PrivateKey,
    algorithm: str,
    certificate: x509.Certificate,
    private_key_ref: str | None,
    request_id: str,
    action: str,
    purpose: str,
) -> SigningKeyRow:
    der = certificate.public_bytes(Encoding.DER)
    key_id = uuid.uuid4()
    sealed = _sealed_private_key(sealer, key, private_key_ref)
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the conflict
            await repo.insert_key(
                conn,
                key_id=key_id,
                kid=hkeys.kid_of(der),
                algorithm=algorithm,
                certificate_der=der,
                private_key_enc=sealed,
                private_key_ref=private_key_ref,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                purpose=purpose,
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already registered", reason="CERTIFICATE_EXISTS") from None
    if purpose == DCC:  # a bundle key never enters the trust list: it must not verify certificates
        await trust_list_change(conn, der, "VN", "ADDED")
    await audit.record(
        conn, actor, action, "signing_key", str(key_id), request_id, {"algorithm": algorithm, "purpose": purpose}
    )
    return await get(conn, str(key_id))


async def generate(
    conn: asyncpg.Connection,
    actor: Principal | None,
    sealer: SigningKeySealer,
    algorithm: str,
    validity: timedelta | None = None,
    request_id: str = "",
    purpose: str = DCC,
) -> SigningKeyRow:
    if algorithm not in ALGORITHMS:
        raise InvalidArgument("unknown algorithm", [FieldViolation("algorithm", "ES256 or PS256", "FIELD_REQUIRED")])
    check_purpose(purpose)
    key = hkeys.generate_private_key(algorithm)
    certificate = _new_certificate(key, algorithm, validity, purpose)
    return await _store(
        conn, actor, sealer, key, algorithm, certificate, None, request_id, "GENERATE_SIGNING_KEY", purpose
    )


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise InvalidArgument("unknown key purpose", [FieldViolation("purpose", "DCC or BUNDLE", "FIELD_OUT_OF_RANGE")])
    return purpose


def _new_certificate(
    key: hkeys.PrivateKey, algorithm: str, validity: timedelta | None, purpose: str
) -> x509.Certificate:
    """A self-signed certificate for a new key; a bundle key's names no DCC entry type (it signs none)."""
    entry_types = ("TEST",) if purpose == DCC else ()
    return hkeys.make_certificate(
        key, algorithm, check_validity(validity), common_name=_COMMON_NAMES[purpose], entry_types=entry_types
    )


def parse_private_key(pem: bytes) -> tuple[hkeys.PrivateKey, str]:
    """(key, algorithm) of a PEM private key."""
    try:
        return hkeys.load_private_key_pem(pem)
    except ValueError as exc:
        raise InvalidArgument(
            f"private key not usable: {exc}",
            [FieldViolation("private_key_pem", str(exc), "PRIVATE_KEY_INVALID")],
            reason="PRIVATE_KEY_INVALID",
        ) from None


def _given_certificate(key: hkeys.PrivateKey, certificate_pem: bytes, validity: timedelta | None) -> x509.Certificate:
    """The certificate imported with a key: it must be the key's and valid now."""
    if validity is not None:
        raise InvalidArgument(
            "validity applies only without a certificate",
            [FieldViolation("validity", "leave unset when certificate_pem is given", "FIELD_NOT_ALLOWED")],
        )
    try:
        certificate = hkeys.load_certificate(certificate_pem, pem_only=True)
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
            violations=[FieldViolation("certificate_pem", "must match the private key", "KEY_CERTIFICATE_MISMATCH")],
        )
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise InvalidArgument(
            "the certificate is not valid now",
            reason="CERTIFICATE_EXPIRED",
            violations=[FieldViolation("certificate_pem", "must be valid now", "CERTIFICATE_EXPIRED")],
        )
    return certificate


async def import_key(
    conn: asyncpg.Connection,
    actor: Principal | None,
    sealer: SigningKeySealer | None,
    private_key_pem: bytes,
    certificate_pem: bytes | None = None,
    validity: timedelta | None = None,
    private_key_ref: str | None = None,
    request_id: str = "",
    purpose: str = DCC,
) -> SigningKeyRow:
    """Import a key; with `private_key_ref` only that path is stored and the key stays in the Secret
    (then `sealer` may be None)."""
    check_purpose(purpose)
    key, algorithm = parse_private_key(private_key_pem)
    if certificate_pem:
        certificate = _given_certificate(key, certificate_pem, validity)
    else:
        certificate = _new_certificate(key, algorithm, validity, purpose)
    return await _store(
        conn, actor, sealer, key, algorithm, certificate, private_key_ref, request_id, "IMPORT_SIGNING_KEY", purpose
    )


async def activate(conn: asyncpg.Connection, actor: Principal | None, key_id: str, request_id: str = "") -> Activation:
    target = await get(conn, key_id)
    now = datetime.now(UTC)
    if target.state == "ACTIVE":
        return Activation(target, None)
    if target.state == "RETIRED" or not target.not_before <= now <= target.not_after:
        raise FailedPrecondition(
            "the key is retired or its certificate is not valid now", reason="SIGNING_KEY_STATE_INVALID"
        )
    previous = await repo.deactivate_active(conn, target.purpose)
    await repo.mark_active(conn, _uuid(key_id))
    await repo.notify_signing_keys(conn)
    await audit.record(
        conn,
        actor,
        "ACTIVATE_SIGNING_KEY",
        "signing_key",
        key_id,
        request_id,
        {"deactivated": previous} if previous else {},
    )
    return Activation(await get(conn, key_id), (await get(conn, previous) if previous else None))


async def retire(
    conn: asyncpg.Connection, actor: Principal | None, key_id: str, force: bool = False, request_id: str = ""
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
    await repo.mark_retired(conn, _uuid(key_id))
    if target.purpose == DCC:
        await trust_list_change(conn, target.certificate_der, "VN", "REMOVED")
    else:
        await repo.notify_signing_keys(conn)  # the bundle lists the bundle keys devices may pin
    await audit.record(conn, actor, "RETIRE_SIGNING_KEY", "signing_key", key_id, request_id, {"force": force})
    return await get(conn, key_id)


async def list_keys(
    conn: asyncpg.Connection,
    state: str | None,
    limit: int,
    after: CreatedPageKey | None,
    purpose: str | None = None,
) -> list[SigningKeyRow]:
    """Newest first, then id; `after` is the previous page's last row; of `purpose` when given."""
    return [_row(r) for r in await repo.list_keys(conn, state, purpose, limit, after)]


async def load_active(
    conn: asyncpg.Connection, opener: SigningKeyOpener, legacy: PiiCipher | None = None, purpose: str = DCC
) -> ActiveSigningKey | None:
    """The ACTIVE key of `purpose` with its private half and its row id, or None when none is active.
    `legacy`: the personal-data keyring, which sealed keys created before the signing-key KEK."""
    row = await repo.active_key_material(conn, purpose)
    if row is None:
        return None
    sealed = row["private_key_enc"]
    if sealed is not None and is_kek_sealed(sealed):
        pem = opener.open(sealed)
    elif sealed is not None:
        if legacy is None:
            raise ValueError("the active key was sealed with the personal-data keyring, which is not held here")
        pem = legacy.open(_PURPOSE, sealed).encode("ascii")
    else:
        with open(row["private_key_ref"], "rb") as f:  # a mounted Kubernetes Secret
            pem = f.read()
    key, _ = hkeys.load_private_key_pem(pem)
    material = hkeys.SigningKeyMaterial(
        key=key, certificate=x509.load_der_x509_certificate(bytes(row["certificate_der"])), algorithm=row["algorithm"]
    )
    return ActiveSigningKey(material, row["id"])
