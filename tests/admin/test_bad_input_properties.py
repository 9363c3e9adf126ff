"""Property: random free text and random page tokens sent to AdminService over real gRPC never end in
INTERNAL (or UNKNOWN): bad input is INVALID_ARGUMENT, good input is answered.

The servers run in the test's own event loop, so Hypothesis (whose @given runs synchronously) draws
the inputs first and the test sends them afterwards: no shrinking, but the same random coverage.
"""

import base64
import json
import uuid

import grpc
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.paging import _filters_digest
from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.type.v1 import certificate_pb2, province_rule_pb2, testing_pb2

SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False
)
# Free text weighted towards what broke: NUL, other C0 and C1 controls, DEL, tab and line breaks.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("\x00\x01\x07\t\n\r\x0b\x1b\x1f\x7f\x85\x9b "),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=40,
)
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**63, -(2**63) - 1, 10**30]),  # just beyond bigint, and far beyond
    st.floats(allow_nan=False),
    TEXT,
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-01-01T00:00:00", "24"]),
    st.just(str(uuid.uuid4())),
)
JSON = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


PAGE_TOKEN = st.one_of(
    TEXT,
    st.builds(lambda k, f: _b64(json.dumps({"k": k, "f": f}).encode()), st.lists(JSON, max_size=4), JSON),
    st.builds(lambda value: _b64(json.dumps(value).encode()), JSON),
    st.builds(lambda n: _b64(b"[" * n + b"]" * n), st.integers(min_value=1, max_value=20_000)),
    st.binary(max_size=64).map(_b64),
)

NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def drawn(strategy) -> list:
    """Examples of `strategy`, drawn by Hypothesis."""
    examples: list = []

    @SETTINGS
    @given(strategy)
    def collect(value) -> None:
        examples.append(value)

    collect()
    return examples


async def answered(call, request, auth) -> grpc.StatusCode:
    try:
        await call(request, metadata=auth)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_random_free_text_never_ends_in_internal(admin):
    stub, auth, _ = admin
    for text in drawn(TEXT):
        rule = province_rule_pb2.ProvinceRule(
            province_code="33",
            entry_type=certificate_pb2.ENTRY_TYPE_TEST,
            test_type=testing_pb2.TEST_TYPE_NAAT,
            validity=Duration(seconds=3600),
            accepted_outcomes=[testing_pb2.OUTCOME_NEGATIVE],
            description=text,
        )
        for call, request in (
            (stub.CreatePartner, pb.CreatePartnerRequest(request_id=str(uuid.uuid4()), name=text)),
            (
                stub.CreateCheckpointDevice,
                pb.CreateCheckpointDeviceRequest(request_id=str(uuid.uuid4()), name=text, province_code="24"),
            ),
            (
                stub.RevokeCredential,
                pb.RevokeCredentialRequest(request_id=str(uuid.uuid4()), credential_id=str(uuid.uuid4()), reason=text),
            ),
            (stub.SetProvinceRule, pb.SetProvinceRuleRequest(request_id=str(uuid.uuid4()), rule=rule)),
            (stub.ListTrustedCertificates, pb.ListTrustedCertificatesRequest(country=text)),
            (stub.ListProvinceRules, pb.ListProvinceRulesRequest(province_code=text)),
        ):
            code = await answered(call, request, auth)
            assert code not in NEVER, (call, repr(text), code)


# Each list's filters when none is set: a token with their digest passes the digest check, so its key
# reaches the list's query unless decode_token refuses it.
LISTS = (
    ("ListProvinceRules", pb.ListProvinceRulesRequest, {"province": None, "history": False}),
    ("ListPartners", pb.ListPartnersRequest, {}),
    ("ListCheckpointDevices", pb.ListCheckpointDevicesRequest, {"province_code": None}),
    ("ListCredentials", pb.ListCredentialsRequest, {"kind": "", "id": "", "revoked": False}),
    ("ListSigningKeys", pb.ListSigningKeysRequest, {"state": None}),
    ("ListTrustedCertificates", pb.ListTrustedCertificatesRequest, {"country": None}),
)


async def test_random_page_keys_with_the_right_digest_never_end_in_internal(admin):
    stub, auth, _ = admin
    for key in drawn(st.lists(JSON_SCALAR, min_size=1, max_size=3)):
        for name, request_type, filters in LISTS:
            page_token = _b64(json.dumps({"k": key, "f": _filters_digest(filters)}).encode())
            code = await answered(getattr(stub, name), request_type(page_token=page_token), auth)
            assert code not in NEVER, (name, key, code)


async def test_random_page_tokens_never_end_in_internal(admin):
    stub, auth, _ = admin
    for page_token in drawn(PAGE_TOKEN):
        for call, request in (
            (stub.ListProvinceRules, pb.ListProvinceRulesRequest(page_token=page_token)),
            (stub.ListPartners, pb.ListPartnersRequest(page_token=page_token)),
            (stub.ListCheckpointDevices, pb.ListCheckpointDevicesRequest(page_token=page_token)),
            (stub.ListCredentials, pb.ListCredentialsRequest(page_token=page_token)),
            (stub.ListSigningKeys, pb.ListSigningKeysRequest(page_token=page_token)),
            (stub.ListTrustedCertificates, pb.ListTrustedCertificatesRequest(page_token=page_token)),
        ):
            code = await answered(call, request, auth)
            assert code not in NEVER, (call, page_token, code)
