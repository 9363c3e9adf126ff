"""Foreign document signer certificates in the trust list: import, remove, list.

Shared by AdminService and the operator CLI. Every change is recorded as a trust-list change and
NOTIFYs verify_svc, which reloads its in-memory trust list at once.
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
from services.registry.trust_list import trust_list_change

COUNTRY = re.compile(r"^[A-Z]{2}$")


def _bad(message: str, field: str, reason: str, description: str = "") -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(field, description or message, reason)], reason=reason)


def parse_certificate(raw: bytes) -> x509.Certificate:
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise _bad("not an X.509 certificate", "certificate_der", "CERTIFICATE_INVALID") from None


async def import_trusted(
    conn, actor: Principal | None, raw: bytes, country: str, request_id: str = ""
) -> asyncpg.Record:
    if not COUNTRY.match(country or ""):
        raise _bad("country must be ISO 3166-1 alpha-2, upper case", "country", "FIELD_FORMAT_INVALID")
    cert = parse_certificate(raw)
    now = datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        raise _bad("the certificate has expired", "certificate_der", "CERTIFICATE_EXPIRED")
    subject_country = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)]
    if subject_country and subject_country[0] != country:
        raise _bad(
            f"the certificate's subject country is {subject_country[0]}", "country", "CERTIFICATE_COUNTRY_MISMATCH"
        )
    der = cert.public_bytes(Encoding.DER)
    certificate_id = uuid.uuid4()
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO trusted_certificates (id, kid, country, certificate_der, not_before, not_after,
                                                  key_usage)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                certificate_id,
                hkeys.kid_of(der),
                country,
                der,
                cert.not_valid_before_utc,
                cert.not_valid_after_utc,
                list(hkeys.allowed_entry_types(cert)),
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
    return await conn.fetchrow("SELECT * FROM trusted_certificates WHERE id = $1", certificate_id)


async def remove_trusted(conn, actor: Principal | None, certificate_id: str, request_id: str = "") -> asyncpg.Record:
    try:
        cid = uuid.UUID(certificate_id)
    except ValueError:
        raise _bad("trusted_certificate_id is not a UUID", "trusted_certificate_id", "FIELD_FORMAT_INVALID") from None
    row = await conn.fetchrow("SELECT * FROM trusted_certificates WHERE id = $1", cid)
    if row is None:
        raise NotFound("no trusted certificate with that id", reason="TRUSTED_CERTIFICATE_NOT_FOUND")
    if row["removed_at"] is None:
        row = await conn.fetchrow("UPDATE trusted_certificates SET removed_at = now() WHERE id = $1 RETURNING *", cid)
        await trust_list_change(conn, bytes(row["certificate_der"]), row["country"], "REMOVED")
        await audit.record(conn, actor, "REMOVE_TRUSTED_CERTIFICATE", "trusted_certificate", certificate_id, request_id)
    return row


async def list_trusted(conn, country: str | None, limit: int, after: list | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM trusted_certificates WHERE ($1::text IS NULL OR country = $1)
             AND ($2::text IS NULL OR (country, not_after, id) > ($2, $3::timestamptz, $4::uuid))
           ORDER BY country, not_after, id LIMIT $5""",
        country,
        after[0] if after else None,
        after[1] if after else None,
        after[2] if after else None,
        limit,
    )
