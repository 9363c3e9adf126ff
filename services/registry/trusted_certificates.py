"""Foreign document signer certificates in the trust list: import, remove, list.

Shared by AdminService and the operator CLI. Every change is recorded as a trust-list change and
NOTIFYs verify_svc, which reloads its in-memory trust list at once. The SQL is in
`repository.trusted_certificates`; rows are returned as `trusted_certificates` records (all columns).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from services.common import audit
from services.common.auth import Principal
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from services.hcert import keys as hkeys
from services.registry.page_keys import TrustedPageKey
from services.registry.repository import trusted_certificates as repo
from services.registry.trust_list import trust_list_change

COUNTRY = re.compile(r"^[A-Z]{2}$")


def _bad(message: str, field: str, reason: str, description: str = "") -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(field, description or message, reason)], reason=reason)


def parse_certificate(raw: bytes) -> x509.Certificate:
    """A document signer certificate: readable throughout, with a public key that may sign DCCs (the
    trust list states every certificate's algorithm, so one without cannot be listed)."""
    try:
        cert = hkeys.load_certificate(raw)
    except ValueError:
        raise _bad("not an X.509 certificate", "certificate_der", "CERTIFICATE_INVALID") from None
    try:
        hkeys.signing_key_algorithm(cert)
    except ValueError as exc:
        raise _bad(
            "the certificate's key cannot sign DCCs", "certificate_der", "CERTIFICATE_INVALID", str(exc)
        ) from None
    return cert


def _check_importable(raw: bytes, country: str) -> x509.Certificate:
    """The certificate, once it is known to be unexpired and of `country` (when its subject names one)."""
    if not COUNTRY.match(country or ""):
        raise _bad("country must be ISO 3166-1 alpha-2, upper case", "country", "FIELD_FORMAT_INVALID")
    cert = parse_certificate(raw)
    now = datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        raise _bad("the certificate has expired", "certificate_der", "CERTIFICATE_EXPIRED")
    subject_country = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)]
    if subject_country and subject_country[0] != country:
        raise _bad(
            f"the certificate's subject country is {subject_country[0]!s}", "country", "CERTIFICATE_COUNTRY_MISMATCH"
        )
    return cert


async def import_trusted(
    conn: asyncpg.Connection, actor: Principal | None, raw: bytes, country: str, request_id: str = ""
) -> asyncpg.Record:
    cert = _check_importable(raw, country)
    der = cert.public_bytes(Encoding.DER)
    certificate_id = uuid.uuid4()
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the conflict
            await repo.insert_trusted(
                conn,
                certificate_id=certificate_id,
                kid=hkeys.kid_of(der),
                country=country,
                certificate_der=der,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                key_usage=list(hkeys.allowed_entry_types(cert)),
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already in the trust list", reason="CERTIFICATE_EXISTS") from None
    await trust_list_change(conn, der, country, "ADDED")
    await audit.record(
        conn,
        actor,
        "IMPORT_TRUSTED_CERTIFICATE",
        "trusted_certificate",
        str(certificate_id),
        request_id,
        {"country": country},
    )
    row = await repo.trusted(conn, certificate_id)
    assert row is not None  # inserted above, in this transaction
    return row


async def remove_trusted(
    conn: asyncpg.Connection, actor: Principal | None, certificate_id: str, request_id: str = ""
) -> asyncpg.Record:
    try:
        cid = uuid.UUID(certificate_id)
    except ValueError:
        raise _bad("trusted_certificate_id is not a UUID", "trusted_certificate_id", "FIELD_FORMAT_INVALID") from None
    row = await repo.trusted(conn, cid)
    if row is None:
        raise NotFound("no trusted certificate with that id", reason="TRUSTED_CERTIFICATE_NOT_FOUND")
    if row["removed_at"] is None:
        row = await repo.mark_removed(conn, cid)
        assert row is not None  # read above; trusted certificates are never deleted
        await trust_list_change(conn, bytes(row["certificate_der"]), row["country"], "REMOVED")
        await audit.record(conn, actor, "REMOVE_TRUSTED_CERTIFICATE", "trusted_certificate", certificate_id, request_id)
    return row


async def list_trusted(
    conn: asyncpg.Connection, country: str | None, limit: int, after: TrustedPageKey | None
) -> list[asyncpg.Record]:
    """By country, then expiry, then id; `after` is the previous page's last row."""
    return await repo.list_trusted(conn, country, limit, after)
