"""AdminService over real gRPC: inputs found by fuzzing that used to end in INTERNAL are INVALID_ARGUMENT.

Each case names the field in a google.rpc.BadRequest field violation: a Duration beyond timedelta's
range, a NUL (or another control character) in free text that reaches Postgres, and crafted page
tokens (deep nesting, an integer beyond bigint, a NUL in a key, a timestamp that cannot be UTC).
"""

import base64
import json
import uuid

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.paging import _filters_digest
from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.type.v1 import certificate_pb2, province_rule_pb2, role_pb2, testing_pb2
from tests.grpc_errors import violations

HUGE = Duration(seconds=10**15)  # within int64, beyond timedelta (about 8.6e13 s)


def rid() -> str:
    return str(uuid.uuid4())


async def refused(call, request, auth) -> list[tuple[str, str]]:
    """The (field, reason) violations of a call that must be INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
    return violations(err.value)


def token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def rule_of_tests(**overrides) -> province_rule_pb2.ProvinceRule:
    fields = dict(
        province_code="31",
        entry_type=certificate_pb2.ENTRY_TYPE_TEST,
        test_type=testing_pb2.TEST_TYPE_RAPID_ANTIGEN,
        validity=Duration(seconds=24 * 3600),
        accepted_outcomes=[testing_pb2.OUTCOME_NEGATIVE],
    )
    fields.update(overrides)
    return province_rule_pb2.ProvinceRule(**fields)


rule_of_tests.__test__ = False  # type: ignore[attr-defined]  # a builder, not a test


@pytest.mark.parametrize("duration", [HUGE, Duration(seconds=-(10**15)), Duration(seconds=2**63 - 1)])
async def test_a_duration_beyond_timedelta_is_invalid_argument(admin, duration):
    stub, auth, _ = admin
    generate = pb.GenerateSigningKeyRequest(
        request_id=rid(), algorithm=certificate_pb2.SIGNING_ALGORITHM_ES256, validity=duration
    )
    assert ("validity", "FIELD_OUT_OF_RANGE") in await refused(stub.GenerateSigningKey, generate, auth)
    imported = pb.ImportSigningKeyRequest(request_id=rid(), private_key_pem="not checked first", validity=duration)
    assert ("validity", "FIELD_OUT_OF_RANGE") in await refused(stub.ImportSigningKey, imported, auth)
    rule = pb.SetProvinceRuleRequest(request_id=rid(), rule=rule_of_tests(validity=duration))
    assert ("rule.validity", "FIELD_OUT_OF_RANGE") in await refused(stub.SetProvinceRule, rule, auth)


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x1b", "\x7f", "\x9b", "\t", "\n"])
async def test_a_control_character_in_a_name_is_invalid_argument(admin, bad):
    stub, auth, _ = admin
    name = f"Trung tâm {bad}Việt Yên {uuid.uuid4().hex[:6]}"
    for call, request in (
        (
            stub.CreateOrganisation,
            pb.CreateOrganisationRequest(
                request_id=rid(), name=name, kind=pb.ORGANISATION_KIND_LAB, province_code="24"
            ),
        ),
        (stub.CreatePartner, pb.CreatePartnerRequest(request_id=rid(), name=name)),
        (
            stub.CreateCheckpointDevice,
            pb.CreateCheckpointDeviceRequest(request_id=rid(), name=name, province_code="24"),
        ),
    ):
        assert ("name", "FIELD_FORMAT_INVALID") in await refused(call, request, auth)


async def test_a_nul_in_a_credential_description_or_revocation_reason_is_invalid_argument(admin):
    stub, auth, _ = admin
    org = await stub.CreateOrganisation(
        pb.CreateOrganisationRequest(
            request_id=rid(), name=f"Lab {uuid.uuid4().hex[:8]}", kind=pb.ORGANISATION_KIND_LAB, province_code="24"
        ),
        metadata=auth,
    )
    holder = pb.Principal(kind=pb.PRINCIPAL_KIND_ORGANISATION, id=org.organisation.organisation_id)
    issue = pb.IssueCredentialRequest(
        request_id=rid(), principal=holder, role=role_pb2.ROLE_LAB, description="LIS\x00export"
    )
    assert ("description", "FIELD_FORMAT_INVALID") in await refused(stub.IssueCredential, issue, auth)
    register = pb.RegisterClientCertificateRequest(
        request_id=rid(), principal=holder, role=role_pb2.ROLE_LAB, sha256_fingerprint="ab" * 32, description="\x00"
    )
    assert ("description", "FIELD_FORMAT_INVALID") in await refused(stub.RegisterClientCertificate, register, auth)

    # Multi-line free text keeps working: tab and line breaks are allowed in a description.
    issued = await stub.IssueCredential(
        pb.IssueCredentialRequest(
            request_id=rid(), principal=holder, role=role_pb2.ROLE_LAB, description="LIS export\tline 1\r\nline 2"
        ),
        metadata=auth,
    )
    revoke = pb.RevokeCredentialRequest(
        request_id=rid(), credential_id=issued.credential.credential_id, reason="leaked\x00"
    )
    assert ("reason", "FIELD_FORMAT_INVALID") in await refused(stub.RevokeCredential, revoke, auth)
    revoke.request_id, revoke.reason = rid(), "leaked in a ticket\nrotated"
    assert (await stub.RevokeCredential(revoke, metadata=auth)).credential.revoked_at.seconds > 0


async def test_a_nul_in_a_province_rule_description_is_invalid_argument(admin):
    stub, auth, _ = admin
    request = pb.SetProvinceRuleRequest(request_id=rid(), rule=rule_of_tests(description="weekend rule\x00"))
    assert ("rule.description", "FIELD_FORMAT_INVALID") in await refused(stub.SetProvinceRule, request, auth)


async def test_a_nul_in_a_list_filter_is_invalid_argument(admin):
    stub, auth, _ = admin
    assert ("province_code", "FIELD_FORMAT_INVALID") in await refused(
        stub.ListProvinceRules, pb.ListProvinceRulesRequest(province_code="3\x00"), auth
    )
    assert ("country", "FIELD_FORMAT_INVALID") in await refused(
        stub.ListTrustedCertificates, pb.ListTrustedCertificatesRequest(country="D\x00"), auth
    )
    # An operator name that cannot be one (a NUL) lists nothing, as an unknown operator name does.
    listed = await stub.ListCredentials(
        pb.ListCredentialsRequest(principal_kind=pb.PRINCIPAL_KIND_OPERATOR, principal_id="ops\x00"), metadata=auth
    )
    assert list(listed.credentials) == []


def _rules_digest() -> str:
    return _filters_digest({"province": None, "history": False})


@pytest.mark.parametrize(
    "page_token",
    [
        token({"k": [2**63], "f": _rules_digest()}),  # beyond bigint
        token({"k": [10**30], "f": _rules_digest()}),
        token({"k": [-(2**63) - 1], "f": _rules_digest()}),
        token({"k": [True], "f": _rules_digest()}),
        token({"k": [1.5], "f": _rules_digest()}),
        token({"k": "x" * 10, "f": _rules_digest()}),
        token([1, 2]),
        token({"k": [1], "f": 7}),
        base64.urlsafe_b64encode(b'{"k":' + b"[" * 100_000 + b"]" * 100_000 + b',"f":""}').decode(),  # deep
        base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode(),  # deep, within the size bound
        "A" * 100_000,
        "\x00",
        "%%%",
    ],
)
async def test_a_crafted_province_rules_page_token_is_invalid_argument(admin, page_token):
    stub, auth, _ = admin
    request = pb.ListProvinceRulesRequest(page_token=page_token)
    assert ("page_token", "PAGE_TOKEN_INVALID") in await refused(stub.ListProvinceRules, request, auth)


@pytest.mark.parametrize(
    ("call", "request_type", "filters", "key"),
    [
        ("ListPartners", pb.ListPartnersRequest, {}, ["na\x00me", str(uuid.uuid4())]),
        ("ListPartners", pb.ListPartnersRequest, {}, ["name", "not-a-uuid"]),
        ("ListPartners", pb.ListPartnersRequest, {}, [[["deep"]], str(uuid.uuid4())]),
        (
            "ListCheckpointDevices",
            pb.ListCheckpointDevicesRequest,
            {"province_code": None},
            ["24", "na\x00me", str(uuid.uuid4())],
        ),
        (
            "ListCredentials",
            pb.ListCredentialsRequest,
            {"kind": "", "id": "", "revoked": False},
            ["0001-01-01T00:00:00+05:00", str(uuid.uuid4())],  # no UTC equivalent: before year 1
        ),
        (
            "ListCredentials",
            pb.ListCredentialsRequest,
            {"kind": "", "id": "", "revoked": False},
            ["2026-01-01T00:00:00", str(uuid.uuid4())],  # no offset: no token has one
        ),
        (
            "ListSigningKeys",
            pb.ListSigningKeysRequest,
            {"state": None},
            ["9999-12-31T23:59:59-05:00", str(uuid.uuid4())],  # after year 9999 in UTC
        ),
        (
            "ListTrustedCertificates",
            pb.ListTrustedCertificatesRequest,
            {"country": None},
            ["D\x00E", "2030-01-01T00:00:00+00:00", str(uuid.uuid4())],
        ),
    ],
)
async def test_a_crafted_list_page_token_is_invalid_argument(admin, call, request_type, filters, key):
    stub, auth, _ = admin
    request = request_type(page_token=token({"k": key, "f": _filters_digest(filters)}))
    assert ("page_token", "PAGE_TOKEN_INVALID") in await refused(getattr(stub, call), request, auth)


async def test_valid_page_tokens_still_page_through(admin):
    stub, auth, _ = admin
    for i in range(3):
        await stub.CreatePartner(pb.CreatePartnerRequest(request_id=rid(), name=f"Đối tác {i} {rid()}"), metadata=auth)
        await stub.SetProvinceRule(
            pb.SetProvinceRuleRequest(request_id=rid(), rule=rule_of_tests(province_code="32", description=f"v{i}")),
            metadata=auth,
        )
    for call, request_type, items in (
        (stub.ListPartners, pb.ListPartnersRequest, "partners"),
        (stub.ListProvinceRules, pb.ListProvinceRulesRequest, "rules"),
        (stub.ListCredentials, pb.ListCredentialsRequest, "credentials"),
    ):
        seen, page_token = 0, ""
        while True:
            page = await call(request_type(page_size=1, page_token=page_token), metadata=auth)
            seen += len(getattr(page, items))
            page_token = page.next_page_token
            if not page_token:
                break
        assert seen >= 1
