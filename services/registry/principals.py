"""Who may call the platform: organisations, partners, checkpoint devices, operators, credentials.

Plain functions over an asyncpg connection, shared by the AdminService servicer and the operator CLI,
each writing its audit row in the caller's transaction. A token is returned exactly once, by
`issue_token`; only its SHA-256 is stored.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from cryptography import x509

from services.common import audit
from services.common.auth import (
    ROLES_OF_KIND,
    Principal,
    PrincipalKind,
    Role,
    certificate_fingerprint,
    new_token,
    token_digest,
)
from services.common.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound

PROVINCE = re.compile(r"^[0-9]{2}$")
OPERATOR_NAME = re.compile(r"^[a-z0-9._-]{1,64}$")
ORG_KINDS = ("SAMPLING_UNIT", "LAB")
# Which organisation kind may hold which role: a lab may also take samples (hospital labs do).
ORG_KIND_ROLES = {"SAMPLING_UNIT": (Role.SAMPLER,), "LAB": (Role.SAMPLER, Role.LAB)}

_TABLE = {
    PrincipalKind.ORGANISATION: "organisations",
    PrincipalKind.PARTNER: "partners",
    PrincipalKind.CHECKPOINT_DEVICE: "checkpoint_devices",
    PrincipalKind.OPERATOR: "operators",
}


@dataclass(frozen=True)
class Credential:
    id: str
    kind: str
    principal_kind: str
    principal_id: str
    principal_name: str  # operators are known by user name
    role: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str
    fingerprint: bytes | None  # SHA-256 of a client certificate's DER; None for tokens


def _check_name(name: str, field: str = "name") -> list[FieldViolation]:
    if not name or not name.strip() or len(name) > 200:
        return [FieldViolation(field, "required, 1-200 characters")]
    return []


def _check_province(code: str, field: str = "province_code") -> list[FieldViolation]:
    if not PROVINCE.match(code or ""):
        return [FieldViolation(field, "a 2-digit Vietnamese province code, e.g. '24' for Bắc Giang")]
    return []


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{field} is not a valid id", [FieldViolation(field, "must be a UUID")]) from None


async def _insert_named(conn, sql: str, name: str, *args, reason: str) -> str:
    new_id = uuid.uuid4()
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the conflict
            await conn.execute(sql, new_id, name.strip(), *args)
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"the name {name.strip()!r} is already registered", reason=reason) from None
    return str(new_id)


async def create_organisation(
    conn, actor: Principal | None, name: str, kind: str, province_code: str, request_id: str = ""
) -> str:
    violations = _check_name(name) + _check_province(province_code)
    if kind not in ORG_KINDS:
        violations.append(FieldViolation("kind", "SAMPLING_UNIT or LAB"))
    if violations:
        raise InvalidArgument("invalid organisation", violations)
    org_id = await _insert_named(
        conn,
        "INSERT INTO organisations (id, name, kind, province_code) VALUES ($1, $2, $3, $4)",
        name,
        kind,
        province_code,
        reason="ORGANISATION_EXISTS",
    )
    await audit.record(conn, actor, "CREATE_ORGANISATION", "organisation", org_id, request_id, {"kind": kind})
    return org_id


async def create_partner(
    conn, actor: Principal | None, name: str, personal_data_access: bool = False, request_id: str = ""
) -> str:
    if violations := _check_name(name):
        raise InvalidArgument("invalid partner", violations)
    partner_id = await _insert_named(
        conn,
        "INSERT INTO partners (id, name, personal_data_access) VALUES ($1, $2, $3)",
        name,
        personal_data_access,
        reason="PARTNER_EXISTS",
    )
    await conn.execute("INSERT INTO partner_cursors (partner_id) VALUES ($1)", uuid.UUID(partner_id))
    await audit.record(conn, actor, "CREATE_PARTNER", "partner", partner_id, request_id)
    return partner_id


async def create_checkpoint_device(
    conn, actor: Principal | None, name: str, province_code: str, request_id: str = ""
) -> str:
    violations = _check_name(name) + _check_province(province_code)
    if violations:
        raise InvalidArgument("invalid checkpoint device", violations)
    device_id = await _insert_named(
        conn,
        "INSERT INTO checkpoint_devices (id, name, province_code) VALUES ($1, $2, $3)",
        name,
        province_code,
        reason="DEVICE_EXISTS",
    )
    await audit.record(
        conn,
        actor,
        "CREATE_CHECKPOINT_DEVICE",
        "checkpoint_device",
        device_id,
        request_id,
        {"province_code": province_code},
    )
    return device_id


async def ensure_operator(conn, name: str) -> uuid.UUID:
    """The id of operator `name` (a user name), registering it on first use."""
    if not OPERATOR_NAME.match(name or ""):
        raise InvalidArgument(
            "invalid operator name",
            [FieldViolation("principal.id", "operator user name: 1-64 of a-z, 0-9, '.', '_', '-'")],
        )
    return await conn.fetchval(
        """INSERT INTO operators (id, name) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        uuid.uuid4(),
        name,
    )


# Sort order of each principal list (the last column is the unique tie-breaker).
_ORDER = {
    PrincipalKind.ORGANISATION: ("name", "id"),
    PrincipalKind.PARTNER: ("name", "id"),
    PrincipalKind.CHECKPOINT_DEVICE: ("province_code", "name", "id"),
    PrincipalKind.OPERATOR: ("name", "id"),
}


async def list_principals(
    conn,
    kind: PrincipalKind,
    limit: int,
    after: list | None = None,
    *,
    org_kind: str | None = None,
    province_code: str | None = None,
) -> list[asyncpg.Record]:
    """Principals of one kind in their documented order; `after` is the previous page's last sort key."""
    order = _ORDER[kind]
    where, args = [], []
    if org_kind:
        args.append(org_kind)
        where.append(f"kind = ${len(args)}")
    if province_code:
        args.append(province_code)
        where.append(f"province_code = ${len(args)}")
    if after is not None:
        start = len(args)
        args.extend(after[:-1])
        args.append(_uuid(after[-1], "page_token"))
        placeholders = ", ".join(f"${start + i + 1}" for i in range(len(order)))
        where.append(f"({', '.join(order)}) > ({placeholders})")
    args.append(limit)
    sql = (
        f"SELECT * FROM {_TABLE[kind]}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {', '.join(order)} LIMIT ${len(args)}"
    )
    return await conn.fetch(sql, *args)


def sort_columns(kind: PrincipalKind) -> tuple[str, ...]:
    return _ORDER[kind]


def sort_key(kind: PrincipalKind, row) -> list:
    return [str(row[c]) for c in _ORDER[kind]]


async def _check_holder(conn, principal_kind: PrincipalKind, principal_id: str, role: Role) -> uuid.UUID:
    if role not in ROLES_OF_KIND[principal_kind]:
        raise InvalidArgument(
            f"a {principal_kind.value} cannot hold role {role.value}",
            reason="ROLE_NOT_ALLOWED_FOR_PRINCIPAL",
            violations=[
                FieldViolation(
                    "role",
                    f"allowed for {principal_kind.value}: " + ", ".join(r.value for r in ROLES_OF_KIND[principal_kind]),
                )
            ],
        )
    if principal_kind is PrincipalKind.OPERATOR:
        return await ensure_operator(conn, principal_id)
    pid = _uuid(principal_id, "principal.id")
    row = await conn.fetchrow(f"SELECT * FROM {_TABLE[principal_kind]} WHERE id = $1", pid)
    if row is None:
        raise NotFound(f"no {principal_kind.value.lower()} with that id", reason="PRINCIPAL_NOT_FOUND")
    if principal_kind is PrincipalKind.ORGANISATION and role not in ORG_KIND_ROLES[row["kind"]]:
        raise FailedPrecondition(
            f"a {row['kind']} organisation cannot hold role {role.value}", reason="ROLE_NOT_ALLOWED_FOR_PRINCIPAL"
        )
    return pid


async def issue_token(
    conn,
    actor: Principal | None,
    principal_kind: PrincipalKind,
    principal_id: str,
    role: Role,
    label: str = "",
    expires_at: datetime | None = None,
    request_id: str = "",
) -> tuple[str, str]:
    """A new bearer token for a principal: returns (credential id, token). The token is never stored."""
    pid = await _check_holder(conn, principal_kind, principal_id, role)
    token = new_token()
    credential_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO credentials (id, kind, secret_sha256, principal_kind, principal_id, role, label,
                                          expires_at)
           VALUES ($1, 'TOKEN', $2, $3, $4, $5, $6, $7)""",
        credential_id,
        token_digest(token),
        principal_kind.value,
        pid,
        role.value,
        label[:200],
        expires_at,
    )
    await audit.record(
        conn,
        actor,
        "ISSUE_CREDENTIAL",
        "credential",
        str(credential_id),
        request_id,
        {"principal_kind": principal_kind.value, "principal_id": str(pid), "role": role.value},
    )
    return str(credential_id), token


def parse_client_certificate(certificate: bytes) -> tuple[bytes, datetime | None]:
    """(SHA-256 fingerprint of the DER, notAfter) of a PEM or DER certificate."""
    try:
        if certificate.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(certificate)
        else:
            cert = x509.load_der_x509_certificate(certificate)
    except ValueError:
        raise InvalidArgument(
            "not an X.509 certificate",
            [FieldViolation("certificate", "one PEM or DER X.509 certificate")],
            reason="CERTIFICATE_INVALID",
        ) from None
    return certificate_fingerprint(certificate), cert.not_valid_after_utc


def parse_fingerprint(text: str) -> bytes:
    """64 hex digits, either case, ':' separators allowed."""
    cleaned = text.replace(":", "").strip()
    try:
        digest = bytes.fromhex(cleaned)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise InvalidArgument("invalid fingerprint", [FieldViolation("sha256_fingerprint", "64 hex digits")])
    return digest


async def register_client_certificate(
    conn,
    actor: Principal | None,
    principal_kind: PrincipalKind,
    principal_id: str,
    role: Role,
    fingerprint: bytes,
    expires_at: datetime | None = None,
    label: str = "",
    request_id: str = "",
) -> str:
    """Register an mTLS client certificate by its SHA-256 fingerprint; returns the credential id."""
    pid = await _check_holder(conn, principal_kind, principal_id, role)
    credential_id = uuid.uuid4()
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO credentials (id, kind, secret_sha256, principal_kind, principal_id, role, label,
                                          expires_at)
                   VALUES ($1, 'CLIENT_CERTIFICATE', $2, $3, $4, $5, $6, $7)""",
                credential_id,
                fingerprint,
                principal_kind.value,
                pid,
                role.value,
                label[:200],
                expires_at,
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already registered", reason="CERTIFICATE_EXISTS") from None
    await audit.record(
        conn,
        actor,
        "REGISTER_CLIENT_CERTIFICATE",
        "credential",
        str(credential_id),
        request_id,
        {"principal_kind": principal_kind.value, "principal_id": str(pid), "role": role.value},
    )
    return str(credential_id)


_CREDENTIAL_COLUMNS = """
    c.id::text, c.kind, c.principal_kind, c.principal_id::text, COALESCE(op.name, '') AS principal_name, c.role,
    c.label, c.created_at, c.expires_at, c.revoked_at, c.revocation_reason,
    CASE WHEN c.kind = 'CLIENT_CERTIFICATE' THEN c.secret_sha256 END AS fingerprint
    FROM credentials c LEFT JOIN operators op ON c.principal_kind = 'OPERATOR' AND op.id = c.principal_id"""


def _credential(row) -> Credential:
    values = dict(row)
    values["fingerprint"] = bytes(values["fingerprint"]) if values["fingerprint"] is not None else None
    return Credential(**values)


async def get_credential(conn, credential_id: str) -> Credential:
    row = await conn.fetchrow(f"SELECT {_CREDENTIAL_COLUMNS} WHERE c.id = $1", _uuid(credential_id, "credential_id"))
    if row is None:
        raise NotFound("no credential with that id", reason="CREDENTIAL_NOT_FOUND")
    return _credential(row)


async def list_credentials(
    conn,
    principal_kind: PrincipalKind | None = None,
    principal_id: str = "",
    include_revoked: bool = False,
    limit: int = 100,
    after: tuple[datetime, str] | None = None,
) -> list[Credential]:
    """Newest first, then id; `after` is the (created_at, id) of the previous page's last row."""
    pid = None
    if principal_id:
        if principal_kind is PrincipalKind.OPERATOR:
            pid = await conn.fetchval("SELECT id FROM operators WHERE name = $1", principal_id) or uuid.UUID(int=0)
        else:
            pid = _uuid(principal_id, "principal_id")
    rows = await conn.fetch(
        f"""SELECT {_CREDENTIAL_COLUMNS}
            WHERE ($1::text IS NULL OR c.principal_kind = $1) AND ($2::uuid IS NULL OR c.principal_id = $2)
              AND ($3 OR c.revoked_at IS NULL)
              AND ($4::timestamptz IS NULL OR (c.created_at, c.id) < ($4, $5::uuid))
            ORDER BY c.created_at DESC, c.id DESC LIMIT $6""",
        principal_kind.value if principal_kind else None,
        pid,
        include_revoked,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_credential(r) for r in rows]


async def revoke_credential(
    conn, actor: Principal | None, credential_id: str, reason: str = "", request_id: str = ""
) -> Credential:
    """Revoke a credential; revoking twice keeps the first revocation."""
    cid = _uuid(credential_id, "credential_id")
    found = await conn.fetchval(
        """UPDATE credentials SET revoked_at = COALESCE(revoked_at, now()),
                  revocation_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revocation_reason END
           WHERE id = $1 RETURNING id""",
        cid,
        reason[:200],
    )
    if found is None:
        raise NotFound("no credential with that id", reason="CREDENTIAL_NOT_FOUND")
    await audit.record(conn, actor, "REVOKE_CREDENTIAL", "credential", credential_id, request_id)
    return await get_credential(conn, credential_id)
