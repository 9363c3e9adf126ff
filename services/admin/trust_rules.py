"""Foreign signing certificates in the trust list, and versioned province rules.

Shared by AdminService and the operator CLI. Every change NOTIFYs verify_svc, which reloads its
in-memory trust list and rules at once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from services.admin.signing_keys import trust_list_change
from services.common import audit
from services.common.auth import Principal
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from services.common.hcert import keys as hkeys

COUNTRY = re.compile(r"^[A-Z]{2}$")
PROVINCE = re.compile(r"^[0-9]{2}$")
ENTRY_TYPES = ("TEST", "VACCINATION", "RECOVERY")
TEST_TYPES = ("NAAT", "RAPID_ANTIGEN")


def _bad(message: str, field: str, reason: str, description: str = "") -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(field, description or message, reason)], reason=reason)


# --- trusted foreign certificates ---------------------------------------------------------------------

def parse_certificate(raw: bytes) -> x509.Certificate:
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise _bad("not an X.509 certificate", "certificate_der", "CERTIFICATE_INVALID") from None


async def import_trusted(conn, actor: Principal | None, raw: bytes, country: str, request_id: str = "") -> asyncpg.Record:
    if not COUNTRY.match(country or ""):
        raise _bad("country must be ISO 3166-1 alpha-2, upper case", "country", "FIELD_FORMAT_INVALID")
    cert = parse_certificate(raw)
    now = datetime.now(timezone.utc)
    if cert.not_valid_after_utc < now:
        raise _bad("the certificate has expired", "certificate_der", "CERTIFICATE_EXPIRED")
    subject_country = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)]
    if subject_country and subject_country[0] != country:
        raise _bad(f"the certificate's subject country is {subject_country[0]}", "country",
                   "CERTIFICATE_COUNTRY_MISMATCH")
    der = cert.public_bytes(Encoding.DER)
    certificate_id = uuid.uuid4()
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO trusted_certificates (id, kid, country, certificate_der, not_before, not_after, key_usage)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                certificate_id, hkeys.kid_of(der), country, der, cert.not_valid_before_utc, cert.not_valid_after_utc,
                list(hkeys.allowed_entry_types(cert)))
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already in the trust list", reason="CERTIFICATE_EXISTS") from None
    await trust_list_change(conn, der, country, "ADDED")
    await audit.record(conn, actor, "IMPORT_TRUSTED_CERTIFICATE", "trusted_certificate", str(certificate_id),
                       request_id, {"country": country})
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
        country, after[0] if after else None, after[1] if after else None, after[2] if after else None, limit)


# --- province rules -----------------------------------------------------------------------------------

@dataclass
class RuleInput:
    province_code: str
    entry_type: str
    test_type: str | None
    disabled: bool = False
    validity: timedelta | None = None
    accepted_outcomes: tuple[str, ...] = ()
    complete_series_required: bool = False
    min_days_since_last_dose: int = 0
    max_days_since_last_dose: int = 0
    min_days_since_first_positive: int = 0
    max_days_since_first_positive: int = 0
    effective_from: datetime | None = None
    description: str = ""


def check_rule(r: RuleInput) -> list[FieldViolation]:
    v: list[FieldViolation] = []

    def bad(field, description, reason="FIELD_FORMAT_INVALID"):
        v.append(FieldViolation(f"rule.{field}", description, reason))

    if not PROVINCE.match(r.province_code or ""):
        bad("province_code", "2 digits, \"00\" for the national default")
    if r.entry_type not in ENTRY_TYPES:
        bad("entry_type", "TEST, VACCINATION or RECOVERY", "FIELD_REQUIRED")
    if r.entry_type == "TEST" and r.test_type not in TEST_TYPES:
        bad("test_type", "NAAT or RAPID_ANTIGEN for a test rule", "FIELD_REQUIRED")
    if r.entry_type in ("VACCINATION", "RECOVERY") and r.test_type:
        bad("test_type", "only for test rules", "FIELD_NOT_ALLOWED")
    vaccination = (r.complete_series_required, r.min_days_since_last_dose, r.max_days_since_last_dose)
    recovery = (r.min_days_since_first_positive, r.max_days_since_first_positive)
    test = (r.validity, r.accepted_outcomes)
    for name, values, owner in (("validity", test, "TEST"), ("min_days_since_last_dose", vaccination, "VACCINATION"),
                                ("min_days_since_first_positive", recovery, "RECOVERY")):
        if any(values) and (r.entry_type != owner or r.disabled):
            bad(name, f"only for an enabled {owner.lower()} rule", "FIELD_NOT_ALLOWED")
    if r.entry_type == "TEST" and not r.disabled:
        if r.validity is None or not timedelta(hours=1) <= r.validity <= timedelta(days=30) or r.validity.seconds % 60:
            bad("validity", "whole minutes, 1 h to 30 days", "FIELD_OUT_OF_RANGE")
        if not r.accepted_outcomes or len(set(r.accepted_outcomes)) != len(r.accepted_outcomes) or \
                not set(r.accepted_outcomes) <= {"NEGATIVE", "POSITIVE"}:
            bad("accepted_outcomes", "a non-empty subset of NEGATIVE, POSITIVE without repeats")
    for low, high, name in ((r.min_days_since_last_dose, r.max_days_since_last_dose, "max_days_since_last_dose"),
                            (r.min_days_since_first_positive, r.max_days_since_first_positive,
                             "max_days_since_first_positive")):
        if low > 365 or high > 3650 or (high and high <= low):
            bad(name, "min 0-365, max 1-3650 and greater than min", "FIELD_OUT_OF_RANGE")
    if r.effective_from is not None and r.effective_from < datetime.now(timezone.utc) - timedelta(minutes=5):
        bad("effective_from", "now or later", "TIME_TOO_OLD")
    if len(r.description) > 500:
        bad("description", "0-500 characters")
    return v


async def set_rule(conn, actor: Principal | None, r: RuleInput, request_id: str = "") -> asyncpg.Record:
    if violations := check_rule(r):
        raise InvalidArgument("invalid province rule", violations)
    rule_id = await conn.fetchval(
        """SELECT rule_id FROM province_rules WHERE province_code = $1 AND entry_type = $2
             AND test_type IS NOT DISTINCT FROM $3 LIMIT 1""", r.province_code, r.entry_type, r.test_type)
    row = await conn.fetchrow(
        """INSERT INTO province_rules (rule_id, province_code, entry_type, test_type, validity_seconds, accepted_outcomes,
                                       require_complete_series, min_days_since_last_dose, max_days_since_last_dose,
                                       min_days_since_positive, max_days_since_positive, disabled, effective_from,
                                       description, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, now()), $14, $15) RETURNING *""",
        rule_id or str(uuid.uuid4()), r.province_code, r.entry_type, r.test_type,
        int(r.validity.total_seconds()) if r.validity else None, list(r.accepted_outcomes), r.complete_series_required,
        r.min_days_since_last_dose or None, r.max_days_since_last_dose or None, r.min_days_since_first_positive or None,
        r.max_days_since_first_positive or None, r.disabled, r.effective_from, r.description,
        uuid.UUID(actor.id) if actor else None)
    await conn.execute("NOTIFY province_rules")
    await audit.record(conn, actor, "SET_PROVINCE_RULE", "province_rule", f"{row['rule_id']}@{row['version']}",
                       request_id, {"province_code": r.province_code, "entry_type": r.entry_type})
    return row


async def list_rules(conn, province: str | None, history: bool, limit: int, after_version: int | None):
    return await conn.fetch(
        """SELECT * FROM province_rules p
           WHERE ($1::text IS NULL OR province_code = $1)
             AND ($2 OR version = (SELECT max(version) FROM province_rules q WHERE q.rule_id = p.rule_id))
             AND ($3::bigint IS NULL OR version < $3)
           ORDER BY version DESC LIMIT $4""", province, history, after_version, limit)
