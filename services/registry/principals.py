"""Who may call the platform: organisations, partners, checkpoint devices, operators, credentials.

Validation and orchestration over an asyncpg connection (the SQL is in `repository.principals`),
shared by the AdminService servicer and the operator CLI, each writing its audit row in the caller's
transaction. A token is returned exactly once, by `issue_token`; only its SHA-256 is stored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg

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
from services.common.fields import check_text
from services.hcert import keys as hkeys
from services.registry.page_keys import CreatedPageKey, PrincipalPageKey
from services.registry.repository import principals as repo

PROVINCE = re.compile(r"^[0-9]{2}$")
OPERATOR_NAME = re.compile(r"^[a-z0-9._-]{1,64}$")
ORG_KINDS = ("SAMPLING_UNIT", "LAB", "HEALTH_DEPARTMENT")
# Which organisation kind may hold which role: a lab may also take samples (hospital labs do); a provincial
# health department reads its province's statistics and nothing else.
ORG_KIND_ROLES = {
    "SAMPLING_UNIT": (Role.SAMPLER,),
    "LAB": (Role.SAMPLER, Role.LAB),
    "HEALTH_DEPARTMENT": (Role.HEALTH_AUTHORITY,),
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


class IssuedToken(NamedTuple):
    credential_id: str
    token: str  # shown once: only its SHA-256 is stored


class ClientCertificate(NamedTuple):
    fingerprint: bytes  # SHA-256 of the DER
    expires_at: datetime | None  # the certificate's notAfter


def _check_name(name: str, field: str = "name") -> list[FieldViolation]:
    if not name or not name.strip() or len(name) > 200:
        return [FieldViolation(field, "required, 1-200 characters")]
    violations: list[FieldViolation] = []
    check_text(name, field, None, violations)  # a name is one line: no control character at all
    return violations


def _check_label(value: str, field: str) -> None:
    """A credential's description or revocation reason: free text, tab and line breaks allowed.

    Longer than 200 characters is cut to 200 where it is stored, as before; a control character
    (NUL above all, which Postgres refuses) is INVALID_ARGUMENT."""
    violations: list[FieldViolation] = []
    if check_text(value, field, None, violations, multiline=True) is None:
        raise InvalidArgument(f"invalid {field}", violations)


def _check_province(code: str, field: str = "province_code") -> list[FieldViolation]:
    if not PROVINCE.match(code or ""):
        return [FieldViolation(field, "a 2-digit Vietnamese province code, e.g. '24' for Bắc Giang")]
    return []


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{field} is not a valid id", [FieldViolation(field, "must be a UUID")]) from None


def _page_token_id(value: str) -> uuid.UUID:
    """The row id in a page token: not a UUID is the same PAGE_TOKEN_INVALID as any other crafted token."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(
            "page_token is not valid",
            [FieldViolation("page_token", "use the next_page_token of the previous page", "PAGE_TOKEN_INVALID")],
            reason="PAGE_TOKEN_INVALID",
        ) from None


async def _insert_named(
    conn: asyncpg.Connection,
    insert: Callable[..., Awaitable[None]],
    name: str,
    *args: object,
    reason: str,
) -> str:
    """Run `insert(conn, new id, stripped name, *args)`; a taken name is ALREADY_EXISTS with `reason`."""
    new_id = uuid.uuid4()
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the conflict
            await insert(conn, new_id, name.strip(), *args)
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"the name {name.strip()!r} is already registered", reason=reason) from None
    return str(new_id)


async def create_organisation(
    conn: asyncpg.Connection,
    actor: Principal | None,
    name: str,
    kind: str,
    province_code: str,
    request_id: str = "",
) -> str:
    violations = _check_name(name) + _check_province(province_code)
    if kind not in ORG_KINDS:
        violations.append(FieldViolation("kind", "SAMPLING_UNIT, LAB or HEALTH_DEPARTMENT"))
    if violations:
        raise InvalidArgument("invalid organisation", violations)
    org_id = await _insert_named(
        conn, repo.insert_organisation, name, kind, province_code, reason="ORGANISATION_EXISTS"
    )
    await audit.record(conn, actor, "CREATE_ORGANISATION", "organisation", org_id, request_id, {"kind": kind})
    return org_id


async def create_partner(
    conn: asyncpg.Connection,
    actor: Principal | None,
    name: str,
    personal_data_access: bool = False,
    request_id: str = "",
) -> str:
    if violations := _check_name(name):
        raise InvalidArgument("invalid partner", violations)
    partner_id = await _insert_named(conn, repo.insert_partner, name, personal_data_access, reason="PARTNER_EXISTS")
    await repo.insert_partner_cursor(conn, uuid.UUID(partner_id))
    await audit.record(conn, actor, "CREATE_PARTNER", "partner", partner_id, request_id)
    return partner_id


async def create_checkpoint_device(
    conn: asyncpg.Connection, actor: Principal | None, name: str, province_code: str, request_id: str = ""
) -> str:
    violations = _check_name(name) + _check_province(province_code)
    if violations:
        raise InvalidArgument("invalid checkpoint device", violations)
    device_id = await _insert_named(conn, repo.insert_checkpoint_device, name, province_code, reason="DEVICE_EXISTS")
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


async def ensure_operator(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """The id of operator `name` (a user name), registering it on first use."""
    if not OPERATOR_NAME.match(name or ""):
        raise InvalidArgument(
            "invalid operator name",
            [FieldViolation("principal.id", "operator user name: 1-64 of a-z, 0-9, '.', '_', '-'")],
        )
    return await repo.upsert_operator(conn, name)


async def get_principal(conn: asyncpg.Connection, kind: PrincipalKind, principal_id: uuid.UUID) -> asyncpg.Record:
    """The row of one organisation, partner, checkpoint device or operator."""
    row = await repo.principal(conn, kind, principal_id)
    if row is None:
        raise NotFound(f"no {kind.value.lower()} with that id", reason="PRINCIPAL_NOT_FOUND")
    return row


async def list_principals(
    conn: asyncpg.Connection,
    kind: PrincipalKind,
    limit: int,
    after: PrincipalPageKey | None = None,
    *,
    org_kind: str | None = None,
    province_code: str | None = None,
) -> list[asyncpg.Record]:
    """Principals of one kind in their documented order; `after` is the previous page's last sort key."""
    return await repo.list_principals(
        conn,
        kind,
        limit,
        after.sort_values if after is not None else (),
        _page_token_id(after.id) if after is not None else None,
        org_kind=org_kind,
        province_code=province_code,
    )


def sort_columns(kind: PrincipalKind) -> tuple[str, ...]:
    return repo.ORDER[kind]


def sort_key(kind: PrincipalKind, row: asyncpg.Record) -> PrincipalPageKey:
    """The page key after `row` in a list of `kind`."""
    values = [str(row[c]) for c in repo.ORDER[kind]]
    return PrincipalPageKey(sort_values=tuple(values[:-1]), id=values[-1])


def _check_role(principal_kind: PrincipalKind, role: Role) -> None:
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


async def _check_holder(
    conn: asyncpg.Connection, principal_kind: PrincipalKind, principal_id: str, role: Role
) -> uuid.UUID:
    """The id of the principal that is to hold `role`, once it is known that it may."""
    _check_role(principal_kind, role)
    if principal_kind is PrincipalKind.OPERATOR:
        return await ensure_operator(conn, principal_id)
    pid = _uuid(principal_id, "principal.id")
    row = await get_principal(conn, principal_kind, pid)
    if principal_kind is PrincipalKind.ORGANISATION and role not in ORG_KIND_ROLES[row["kind"]]:
        raise FailedPrecondition(
            f"a {row['kind']} organisation cannot hold role {role.value}", reason="ROLE_NOT_ALLOWED_FOR_PRINCIPAL"
        )
    return pid


def _holder_details(principal_kind: PrincipalKind, pid: uuid.UUID, role: Role) -> dict[str, str]:
    return {"principal_kind": principal_kind.value, "principal_id": str(pid), "role": role.value}


async def issue_token(
    conn: asyncpg.Connection,
    actor: Principal | None,
    principal_kind: PrincipalKind,
    principal_id: str,
    role: Role,
    label: str = "",
    expires_at: datetime | None = None,
    request_id: str = "",
) -> IssuedToken:
    """A new bearer token for a principal. The token is never stored."""
    _check_label(label, "description")
    pid = await _check_holder(conn, principal_kind, principal_id, role)
    token = new_token()
    credential_id = uuid.uuid4()
    await repo.insert_credential(
        conn,
        credential_id=credential_id,
        kind="TOKEN",
        secret_sha256=token_digest(token),
        principal_kind=principal_kind.value,
        principal_id=pid,
        role=role.value,
        label=label[:200],
        expires_at=expires_at,
    )
    details = _holder_details(principal_kind, pid, role)
    await audit.record(conn, actor, "ISSUE_CREDENTIAL", "credential", str(credential_id), request_id, details)
    return IssuedToken(str(credential_id), token)


def parse_client_certificate(certificate: bytes) -> ClientCertificate:
    """The SHA-256 fingerprint of the DER and the notAfter of a PEM or DER certificate."""
    try:
        cert = hkeys.load_certificate(certificate)
    except ValueError:
        raise InvalidArgument(
            "not an X.509 certificate",
            [FieldViolation("certificate", "one PEM or DER X.509 certificate")],
            reason="CERTIFICATE_INVALID",
        ) from None
    return ClientCertificate(certificate_fingerprint(certificate), cert.not_valid_after_utc)


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
    conn: asyncpg.Connection,
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
    _check_label(label, "description")
    pid = await _check_holder(conn, principal_kind, principal_id, role)
    credential_id = uuid.uuid4()
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the conflict
            await repo.insert_credential(
                conn,
                credential_id=credential_id,
                kind="CLIENT_CERTIFICATE",
                secret_sha256=fingerprint,
                principal_kind=principal_kind.value,
                principal_id=pid,
                role=role.value,
                label=label[:200],
                expires_at=expires_at,
            )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("this certificate is already registered", reason="CERTIFICATE_EXISTS") from None
    details = _holder_details(principal_kind, pid, role)
    await audit.record(
        conn, actor, "REGISTER_CLIENT_CERTIFICATE", "credential", str(credential_id), request_id, details
    )
    return str(credential_id)


def _credential(row: asyncpg.Record) -> Credential:
    values = dict(row)
    values["fingerprint"] = bytes(values["fingerprint"]) if values["fingerprint"] is not None else None
    return Credential(**values)


async def get_credential(conn: asyncpg.Connection, credential_id: str) -> Credential:
    row = await repo.credential(conn, _uuid(credential_id, "credential_id"))
    if row is None:
        raise NotFound("no credential with that id", reason="CREDENTIAL_NOT_FOUND")
    return _credential(row)


async def list_credentials(
    conn: asyncpg.Connection,
    principal_kind: PrincipalKind | None = None,
    principal_id: str = "",
    include_revoked: bool = False,
    limit: int = 100,
    after: CreatedPageKey | None = None,
) -> list[Credential]:
    """Newest first, then id; `after` is the previous page's last row."""
    pid = None
    if principal_id:
        if principal_kind is PrincipalKind.OPERATOR:
            # An unknown operator name lists nothing (the nil UUID holds no credential); a string that
            # cannot be an operator name (e.g. with a NUL, which Postgres refuses) is not looked up.
            known = await repo.operator_id(conn, principal_id) if OPERATOR_NAME.match(principal_id) else None
            pid = known or uuid.UUID(int=0)
        else:
            pid = _uuid(principal_id, "principal_id")
    rows = await repo.list_credentials(
        conn, principal_kind.value if principal_kind else None, pid, include_revoked, limit, after
    )
    return [_credential(r) for r in rows]


async def revoke_credential(
    conn: asyncpg.Connection, actor: Principal | None, credential_id: str, reason: str = "", request_id: str = ""
) -> Credential:
    """Revoke a credential; revoking twice keeps the first revocation."""
    _check_label(reason, "reason")
    found = await repo.revoke_credential(conn, _uuid(credential_id, "credential_id"), reason[:200])
    if found is None:
        raise NotFound("no credential with that id", reason="CREDENTIAL_NOT_FOUND")
    await audit.record(conn, actor, "REVOKE_CREDENTIAL", "credential", credential_id, request_id)
    return await get_credential(conn, credential_id)
