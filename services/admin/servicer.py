"""The AdminService servicer: the registry (services.registry) over gRPC, for operators only.

Organisations, partners, checkpoint devices, credentials, signing keys, trusted foreign certificates
and province rules. Hosted by the result_svc process; the operator CLI (services.admin.cli) does the
same work over a direct database connection. A thin layer: it checks request shapes, runs the
registry's functions in one idempotent transaction per mutation, and converts rows to messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.auth import Principal, PrincipalKind, Role, current_caller
from services.common.config import ServiceConfig
from services.common.db import in_tx
from services.common.errors import FieldViolation, InvalidArgument
from services.common.fields import check_text
from services.common.idempotency import IdempotentRequest, run_idempotent
from services.common.paging import bigint, decode_token, encode_token, page_size
from services.common.protoconv import enum_name, enum_value, timestamp, to_datetime
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.type.v1 import certificate_pb2, province_rule_pb2, role_pb2, testing_pb2
from services.registry import principals, province_rules, signing_keys, trusted_certificates
from services.registry.key_sealing import SigningKeySealer
from services.registry.page_keys import CreatedPageKey, PrincipalPageKey, TrustedPageKey
from services.registry.trust_list import signing_certificate

SERVICE = "covidtest.admin.v1.AdminService"
R = TypeVar("R", bound=Message)


def _organisation(row: asyncpg.Record) -> pb.Organisation:
    return pb.Organisation(
        organisation_id=str(row["id"]),
        name=row["name"],
        kind=enum_value(pb.OrganisationKind, row["kind"]),
        province_code=row["province_code"],
        created_at=timestamp(row["created_at"]),
    )


def _partner(row: asyncpg.Record) -> pb.Partner:
    return pb.Partner(
        partner_id=str(row["id"]),
        name=row["name"],
        personal_data_access=row["personal_data_access"],
        created_at=timestamp(row["created_at"]),
    )


def _device(row: asyncpg.Record) -> pb.CheckpointDevice:
    return pb.CheckpointDevice(
        device_id=str(row["id"]),
        name=row["name"],
        province_code=row["province_code"],
        created_at=timestamp(row["created_at"]),
    )


def _credential(c: principals.Credential) -> pb.Credential:
    kind = PrincipalKind(c.principal_kind)
    return pb.Credential(
        credential_id=c.id,
        principal=pb.Principal(
            kind=enum_value(pb.PrincipalKind, kind.value),
            id=c.principal_name if kind is PrincipalKind.OPERATOR else c.principal_id,
        ),
        role=enum_value(role_pb2.Role, c.role),
        kind=enum_value(pb.CredentialKind, c.kind),
        description=c.label,
        created_at=timestamp(c.created_at),
        expires_at=timestamp(c.expires_at),
        revoked_at=timestamp(c.revoked_at),
        revocation_reason=c.revocation_reason,
        certificate_sha256_fingerprint=c.fingerprint.hex() if c.fingerprint else "",
    )


def _holder(
    request: pb.IssueCredentialRequest | pb.RegisterClientCertificateRequest,
) -> tuple[PrincipalKind, str, Role]:
    """(kind, id, role) of the principal a credential is for."""
    violations = []
    kind_name = enum_name(pb.PrincipalKind, request.principal.kind)
    role_name = enum_name(role_pb2.Role, request.role)
    if not kind_name:
        violations.append(FieldViolation("principal.kind", "required"))
    if not request.principal.id:
        violations.append(FieldViolation("principal.id", "required"))
    if not role_name:
        violations.append(FieldViolation("role", "required"))
    if violations:
        raise InvalidArgument("invalid principal or role", violations)
    return PrincipalKind(kind_name), request.principal.id, Role(role_name)


def _future(ts: Timestamp, field: str) -> datetime | None:
    if not ts.ByteSize():
        return None
    value = to_datetime(ts, field)
    if value <= datetime.now(value.tzinfo):
        raise InvalidArgument(f"{field} must be in the future", [FieldViolation(field, "must be in the future")])
    return value


def _signing_key(k: signing_keys.SigningKeyRow) -> pb.SigningKey:
    return pb.SigningKey(
        signing_key_id=k.id,
        state=enum_value(pb.SigningKeyState, k.state),
        certificate=signing_certificate(k.certificate_der, "VN"),
        created_at=timestamp(k.created_at),
        activated_at=timestamp(k.activated_at),
        deactivated_at=timestamp(k.deactivated_at),
        retired_at=timestamp(k.retired_at),
        certificates_signed=k.certificates_signed,
        last_certificate_expires_at=timestamp(k.last_certificate_expires_at),
        purpose=enum_value(pb.SigningKeyPurpose, k.purpose),
    )


def _purpose(request: pb.GenerateSigningKeyRequest | pb.ImportSigningKeyRequest) -> str:
    """The purpose asked for; unset means DCC."""
    return enum_name(pb.SigningKeyPurpose, request.purpose) or signing_keys.DCC


def _trusted(row: asyncpg.Record) -> pb.TrustedCertificate:
    return pb.TrustedCertificate(
        trusted_certificate_id=str(row["id"]),
        certificate=signing_certificate(bytes(row["certificate_der"]), row["country"]),
        imported_at=timestamp(row["created_at"]),
        removed_at=timestamp(row["removed_at"]),
    )


def _rule_input(rule: province_rule_pb2.ProvinceRule) -> province_rules.RuleInput:
    return province_rules.RuleInput(
        province_code=rule.province_code,
        entry_type=enum_name(certificate_pb2.EntryType, rule.entry_type),
        test_type=enum_name(testing_pb2.TestType, rule.test_type) or None,
        disabled=rule.disabled,
        validity=_timedelta(rule.validity, "rule.validity") if rule.HasField("validity") else None,
        accepted_outcomes=tuple(enum_name(testing_pb2.Outcome, o) for o in rule.accepted_outcomes),
        complete_series_required=rule.complete_series_required,
        min_days_since_last_dose=rule.min_days_since_last_dose,
        max_days_since_last_dose=rule.max_days_since_last_dose,
        min_days_since_first_positive=rule.min_days_since_first_positive,
        max_days_since_first_positive=rule.max_days_since_first_positive,
        effective_from=to_datetime(rule.effective_from, "rule.effective_from")
        if rule.HasField("effective_from")
        else None,
        description=rule.description,
    )


# The range google.protobuf.Duration documents (about 10,000 years). protobuf's ToTimedelta does not
# check it, and a larger `seconds` overflows timedelta (OverflowError, an INTERNAL).
MAX_DURATION_SECONDS = 315_576_000_000


def _timedelta(value: Duration, field: str) -> timedelta:
    """A Duration as a timedelta; one outside the Duration range, or with bad nanos, is INVALID_ARGUMENT."""
    seconds, nanos = value.seconds, value.nanos
    if (
        abs(seconds) > MAX_DURATION_SECONDS
        or abs(nanos) >= 1_000_000_000
        or (seconds > 0 and nanos < 0)
        or (seconds < 0 and nanos > 0)
    ):
        raise InvalidArgument(
            f"{field} is not a valid duration",
            [FieldViolation(field, "a duration within ±10,000 years, nanos of the same sign", "FIELD_OUT_OF_RANGE")],
        )
    return value.ToTimedelta()


def _validity(request: pb.GenerateSigningKeyRequest | pb.ImportSigningKeyRequest) -> timedelta | None:
    return _timedelta(request.validity, "validity") if request.HasField("validity") else None


def _filter_text(value: str, field: str) -> list[FieldViolation]:
    """The violation of a free-text list filter that is no single-line text (e.g. holds a NUL), if any."""
    violations: list[FieldViolation] = []
    check_text(value, field, None, violations)
    return violations


def _client_certificate(request: pb.RegisterClientCertificateRequest) -> principals.ClientCertificate:
    """The fingerprint (and, given the certificate itself, its expiry) of the certificate to register."""
    which = request.WhichOneof("certificate")
    if which is None:
        raise InvalidArgument(
            "a certificate is required",
            [FieldViolation("certificate_der", "one of certificate_der, certificate_pem, sha256_fingerprint")],
        )
    if which == "sha256_fingerprint":
        return principals.ClientCertificate(principals.parse_fingerprint(request.sha256_fingerprint), None)
    raw = request.certificate_der if which == "certificate_der" else request.certificate_pem.encode()
    return principals.parse_client_certificate(raw)


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, deps: Deps[ServiceConfig], sealer: SigningKeySealer):
        """`sealer`: the signing-key KEK's public half, which seals new keys (this process cannot open them)."""
        self._pool = deps.pool
        self._sealer = sealer

    async def _mutate(
        self,
        method: str,
        request: IdempotentRequest,
        response_type: type[R],
        mutate: Callable[[asyncpg.Connection, Principal], Awaitable[R]],
        stored: Callable[[R], R] | None = None,
    ) -> R:
        """Run `mutate(conn, operator)` once per request id, in one transaction."""
        actor = current_caller()
        return await run_idempotent(
            self._pool, actor.id, method, request, response_type, lambda conn: mutate(conn, actor), stored=stored
        )

    async def _principal_page(
        self, kind: PrincipalKind, requested_size: int, page_token: str, filters: dict[str, str | None]
    ) -> tuple[list[asyncpg.Record], str]:
        """One page of a principal list and the next page's token ("" on the last page)."""
        limit = page_size(requested_size)
        parsers = [str] * len(principals.sort_columns(kind))
        after = PrincipalPageKey.from_token(decode_token(page_token, filters, parsers))
        rows = await in_tx(self._pool, lambda conn: principals.list_principals(conn, kind, limit + 1, after, **filters))
        page = rows[:limit]
        token = encode_token(principals.sort_key(kind, page[-1]).token(), filters) if len(rows) > limit else ""
        return page, token

    # --- principals --------------------------------------------------------------------------------

    async def CreateOrganisation(
        self, request: pb.CreateOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateOrganisationResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.CreateOrganisationResponse:
            org_id = await principals.create_organisation(
                conn,
                actor,
                request.name,
                enum_name(pb.OrganisationKind, request.kind),
                request.province_code,
                request.request_id,
            )
            row = await principals.get_principal(conn, PrincipalKind.ORGANISATION, uuid.UUID(org_id))
            return pb.CreateOrganisationResponse(organisation=_organisation(row))

        return await self._mutate("CreateOrganisation", request, pb.CreateOrganisationResponse, mutate)

    async def ListOrganisations(
        self, request: pb.ListOrganisationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrganisationsResponse:
        if request.province_code and not principals.PROVINCE.match(request.province_code):
            raise InvalidArgument("invalid filter", [FieldViolation("province_code", "2 digits")])
        filters = {
            "org_kind": enum_name(pb.OrganisationKind, request.kind) or None,
            "province_code": request.province_code or None,
        }
        page, token = await self._principal_page(
            PrincipalKind.ORGANISATION, request.page_size, request.page_token, filters
        )
        return pb.ListOrganisationsResponse(organisations=[_organisation(r) for r in page], next_page_token=token)

    async def CreatePartner(
        self, request: pb.CreatePartnerRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePartnerResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.CreatePartnerResponse:
            partner_id = await principals.create_partner(
                conn, actor, request.name, request.personal_data_access, request.request_id
            )
            row = await principals.get_principal(conn, PrincipalKind.PARTNER, uuid.UUID(partner_id))
            return pb.CreatePartnerResponse(partner=_partner(row))

        return await self._mutate("CreatePartner", request, pb.CreatePartnerResponse, mutate)

    async def ListPartners(
        self, request: pb.ListPartnersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPartnersResponse:
        page, token = await self._principal_page(PrincipalKind.PARTNER, request.page_size, request.page_token, {})
        return pb.ListPartnersResponse(partners=[_partner(r) for r in page], next_page_token=token)

    async def CreateCheckpointDevice(
        self, request: pb.CreateCheckpointDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCheckpointDeviceResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.CreateCheckpointDeviceResponse:
            device_id = await principals.create_checkpoint_device(
                conn, actor, request.name, request.province_code, request.request_id
            )
            row = await principals.get_principal(conn, PrincipalKind.CHECKPOINT_DEVICE, uuid.UUID(device_id))
            return pb.CreateCheckpointDeviceResponse(device=_device(row))

        return await self._mutate("CreateCheckpointDevice", request, pb.CreateCheckpointDeviceResponse, mutate)

    async def ListCheckpointDevices(
        self, request: pb.ListCheckpointDevicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCheckpointDevicesResponse:
        if request.province_code and not principals.PROVINCE.match(request.province_code):
            raise InvalidArgument("invalid filter", [FieldViolation("province_code", "2 digits")])
        filters = {"province_code": request.province_code or None}
        page, token = await self._principal_page(
            PrincipalKind.CHECKPOINT_DEVICE, request.page_size, request.page_token, filters
        )
        return pb.ListCheckpointDevicesResponse(devices=[_device(r) for r in page], next_page_token=token)

    # --- credentials -------------------------------------------------------------------------------

    async def IssueCredential(
        self, request: pb.IssueCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueCredentialResponse:
        kind, principal_id, role = _holder(request)
        expires_at = _future(request.expires_at, "expires_at")

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.IssueCredentialResponse:
            issued = await principals.issue_token(
                conn, actor, kind, principal_id, role, request.description, expires_at, request.request_id
            )
            credential = await principals.get_credential(conn, issued.credential_id)
            return pb.IssueCredentialResponse(credential=_credential(credential), token=issued.token)

        def without_token(response: pb.IssueCredentialResponse) -> pb.IssueCredentialResponse:
            kept = pb.IssueCredentialResponse()  # a replay never shows the token again: only its hash is kept
            kept.CopyFrom(response)
            kept.token = ""
            return kept

        return await self._mutate("IssueCredential", request, pb.IssueCredentialResponse, mutate, without_token)

    async def ListCredentials(
        self, request: pb.ListCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCredentialsResponse:
        limit = page_size(request.page_size)
        kind_name = enum_name(pb.PrincipalKind, request.principal_kind)
        if request.principal_id and not kind_name:
            raise InvalidArgument(
                "principal_id needs principal_kind", [FieldViolation("principal_kind", "required with principal_id")]
            )
        filters = {"kind": kind_name, "id": request.principal_id, "revoked": request.include_revoked}
        after = CreatedPageKey.from_token(decode_token(request.page_token, filters, CreatedPageKey.PARSERS))

        async def read(conn: asyncpg.Connection) -> list[principals.Credential]:
            return await principals.list_credentials(
                conn,
                PrincipalKind(kind_name) if kind_name else None,
                request.principal_id,
                request.include_revoked,
                limit + 1,
                after,
            )

        creds = await in_tx(self._pool, read)
        page = creds[:limit]
        token = (
            encode_token(CreatedPageKey.of(page[-1].created_at, page[-1].id).token(), filters)
            if len(creds) > limit
            else ""
        )
        return pb.ListCredentialsResponse(credentials=[_credential(c) for c in page], next_page_token=token)

    async def RevokeCredential(
        self, request: pb.RevokeCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeCredentialResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.RevokeCredentialResponse:
            credential = await principals.revoke_credential(
                conn, actor, request.credential_id, request.reason, request.request_id
            )
            return pb.RevokeCredentialResponse(credential=_credential(credential))

        return await self._mutate("RevokeCredential", request, pb.RevokeCredentialResponse, mutate)

    async def RegisterClientCertificate(
        self, request: pb.RegisterClientCertificateRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterClientCertificateResponse:
        kind, principal_id, role = _holder(request)
        fingerprint, expires_at = _client_certificate(request)

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.RegisterClientCertificateResponse:
            credential_id = await principals.register_client_certificate(
                conn, actor, kind, principal_id, role, fingerprint, expires_at, request.description, request.request_id
            )
            credential = await principals.get_credential(conn, credential_id)
            return pb.RegisterClientCertificateResponse(credential=_credential(credential))

        return await self._mutate("RegisterClientCertificate", request, pb.RegisterClientCertificateResponse, mutate)

    # --- signing keys ------------------------------------------------------------------------------

    async def GenerateSigningKey(
        self, request: pb.GenerateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateSigningKeyResponse:
        algorithm = enum_name(certificate_pb2.SigningAlgorithm, request.algorithm)
        validity = _validity(request)
        purpose = _purpose(request)

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.GenerateSigningKeyResponse:
            key = await signing_keys.generate(
                conn, actor, self._sealer, algorithm, validity, request.request_id, purpose=purpose
            )
            return pb.GenerateSigningKeyResponse(signing_key=_signing_key(key))

        return await self._mutate("GenerateSigningKey", request, pb.GenerateSigningKeyResponse, mutate)

    async def ImportSigningKey(
        self, request: pb.ImportSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ImportSigningKeyResponse:
        if not request.private_key_pem:
            raise InvalidArgument(
                "private_key_pem is required",
                [FieldViolation("private_key_pem", "a PEM private key", "FIELD_REQUIRED")],
            )
        validity = _validity(request)
        purpose = _purpose(request)

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.ImportSigningKeyResponse:
            key = await signing_keys.import_key(
                conn,
                actor,
                self._sealer,
                request.private_key_pem.encode(),
                request.certificate_pem.encode() or None,
                validity,
                request_id=request.request_id,
                purpose=purpose,
            )
            return pb.ImportSigningKeyResponse(signing_key=_signing_key(key))

        return await self._mutate("ImportSigningKey", request, pb.ImportSigningKeyResponse, mutate)

    async def ActivateSigningKey(
        self, request: pb.ActivateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ActivateSigningKeyResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.ActivateSigningKeyResponse:
            rotation = await signing_keys.activate(conn, actor, request.signing_key_id, request.request_id)
            return pb.ActivateSigningKeyResponse(
                activated=_signing_key(rotation.activated),
                deactivated=_signing_key(rotation.deactivated) if rotation.deactivated else None,
            )

        return await self._mutate("ActivateSigningKey", request, pb.ActivateSigningKeyResponse, mutate)

    async def RetireSigningKey(
        self, request: pb.RetireSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetireSigningKeyResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.RetireSigningKeyResponse:
            key = await signing_keys.retire(conn, actor, request.signing_key_id, request.force, request.request_id)
            return pb.RetireSigningKeyResponse(signing_key=_signing_key(key))

        return await self._mutate("RetireSigningKey", request, pb.RetireSigningKeyResponse, mutate)

    async def ListSigningKeys(
        self, request: pb.ListSigningKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSigningKeysResponse:
        limit = page_size(request.page_size)
        state = enum_name(pb.SigningKeyState, request.state) or None
        purpose = enum_name(pb.SigningKeyPurpose, request.purpose) or None
        filters = {"state": state, "purpose": purpose}
        after = CreatedPageKey.from_token(decode_token(request.page_token, filters, CreatedPageKey.PARSERS))
        keys = await in_tx(self._pool, lambda conn: signing_keys.list_keys(conn, state, limit + 1, after, purpose))
        page = keys[:limit]
        token = (
            encode_token(CreatedPageKey.of(page[-1].created_at, page[-1].id).token(), filters)
            if len(keys) > limit
            else ""
        )
        return pb.ListSigningKeysResponse(signing_keys=[_signing_key(k) for k in page], next_page_token=token)

    # --- trusted certificates ----------------------------------------------------------------------

    async def ImportTrustedCertificate(
        self, request: pb.ImportTrustedCertificateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ImportTrustedCertificateResponse:
        which = request.WhichOneof("certificate")
        if which is None:
            raise InvalidArgument(
                "a certificate is required",
                [FieldViolation("certificate_der", "certificate_der or certificate_pem", "FIELD_REQUIRED")],
            )
        raw = request.certificate_der if which == "certificate_der" else request.certificate_pem.encode()

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.ImportTrustedCertificateResponse:
            row = await trusted_certificates.import_trusted(conn, actor, raw, request.country, request.request_id)
            return pb.ImportTrustedCertificateResponse(trusted_certificate=_trusted(row))

        return await self._mutate("ImportTrustedCertificate", request, pb.ImportTrustedCertificateResponse, mutate)

    async def ListTrustedCertificates(
        self, request: pb.ListTrustedCertificatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTrustedCertificatesResponse:
        limit = page_size(request.page_size)
        # A filter reaches Postgres as text: a NUL in it would be a database error, not "no rows".
        if violations := _filter_text(request.country, "country"):
            raise InvalidArgument("invalid filter", violations)
        country = request.country or None
        filters = {"country": country}
        after = TrustedPageKey.from_token(decode_token(request.page_token, filters, TrustedPageKey.PARSERS))
        rows = await in_tx(self._pool, lambda conn: trusted_certificates.list_trusted(conn, country, limit + 1, after))
        page = rows[:limit]
        token = encode_token(TrustedPageKey.of(page[-1]).token(), filters) if len(rows) > limit else ""
        return pb.ListTrustedCertificatesResponse(
            trusted_certificates=[_trusted(r) for r in page], next_page_token=token
        )

    async def RemoveTrustedCertificate(
        self, request: pb.RemoveTrustedCertificateRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveTrustedCertificateResponse:
        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.RemoveTrustedCertificateResponse:
            row = await trusted_certificates.remove_trusted(
                conn, actor, request.trusted_certificate_id, request.request_id
            )
            return pb.RemoveTrustedCertificateResponse(trusted_certificate=_trusted(row))

        return await self._mutate("RemoveTrustedCertificate", request, pb.RemoveTrustedCertificateResponse, mutate)

    # --- province rules ----------------------------------------------------------------------------

    async def SetProvinceRule(
        self, request: pb.SetProvinceRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetProvinceRuleResponse:
        if not request.HasField("rule"):
            raise InvalidArgument("rule is required", [FieldViolation("rule", "the new version", "FIELD_REQUIRED")])
        rule = _rule_input(request.rule)

        async def mutate(conn: asyncpg.Connection, actor: Principal) -> pb.SetProvinceRuleResponse:
            row = await province_rules.set_rule(conn, actor, rule, request.request_id)
            return pb.SetProvinceRuleResponse(rule=province_rules.rule_message(province_rules.rule_from_row(row)))

        return await self._mutate("SetProvinceRule", request, pb.SetProvinceRuleResponse, mutate)

    async def ListProvinceRules(
        self, request: pb.ListProvinceRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProvinceRulesResponse:
        limit = page_size(request.page_size)
        if violations := _filter_text(request.province_code, "province_code"):
            raise InvalidArgument("invalid filter", violations)
        province = request.province_code or None
        filters = {"province": province, "history": request.include_history}
        after = decode_token(request.page_token, filters, (bigint,))
        after_version = after[0] if after else None
        rows = await in_tx(
            self._pool,
            lambda conn: province_rules.list_rules(conn, province, request.include_history, limit + 1, after_version),
        )
        page = rows[:limit]
        token = encode_token([page[-1]["version"]], filters) if len(rows) > limit else ""
        return pb.ListProvinceRulesResponse(
            rules=[province_rules.rule_message(province_rules.rule_from_row(r)) for r in page], next_page_token=token
        )


def admin_service(deps: Deps[ServiceConfig], sealer: SigningKeySealer) -> GrpcService:
    servicer = AdminServicer(deps, sealer)
    methods = pb.DESCRIPTOR.services_by_name["AdminService"].methods
    return GrpcService(
        SERVICE,
        lambda server: admin_service_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server),
        {m.name: [Role.OPERATOR] for m in methods},
    )
