"""Property: no RPC of the platform answers INTERNAL or UNKNOWN to anything a client can send.

As an external fuzzer would, the test finds every service and method through gRPC server reflection over
the wire and builds the request types from the descriptors it gets back (a fresh descriptor pool, not the
generated modules). For each method Hypothesis draws requests (messages built field by field with
extreme values, mutations of valid seed requests, raw random bytes for the parser) and sends each over
real gRPC with a credential the method accepts (found by probing every role), sometimes with none or a
garbage one. A server-streaming method is read for at most its first message.

Hypothesis runs in a worker thread with blocking (sync) gRPC channels, while the in-process asyncio
servers keep serving on the test's event loop: Hypothesis can then shrink a failure to a minimal request.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from services.gen.covidtest.admin.v1 import admin_service_pb2
from services.gen.covidtest.publish.v1 import publish_service_pb2
from services.gen.covidtest.result.v1 import result_service_pb2
from services.gen.covidtest.statistics.v1 import statistics_service_pb2
from services.gen.covidtest.verify.v1 import verify_service_pb2
from tests.fuzz.messages import BYTES, MessageStrategies, short

NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
EXPECTED_SERVICES = {
    module.DESCRIPTOR.package + "." + name: len(service.methods)
    for module in (
        result_service_pb2,
        admin_service_pb2,
        publish_service_pb2,
        verify_service_pb2,
        statistics_service_pb2,
    )
    for name, service in module.DESCRIPTOR.services_by_name.items()
}
SKIPPED_SERVICES = ("grpc.health.", "grpc.reflection.")
CALL_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 0.6
# Per method. CI runs the same examples every time (derandomized); FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 hunts
# for more with fresh random draws.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
STREAM_EXAMPLES = max(1, EXAMPLES // 8)
SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM", "") != "1",
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


# ---------------------------------------------------------------- discovery through server reflection


@dataclass
class Rpc:
    address: str
    service: str
    method: MethodDescriptor
    request_class: type[Message]
    roles: list[str] = field(default_factory=list)  # roles whose credential gets past the call guard

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return self.method.server_streaming


def _reflect(stub, **request) -> reflection_pb2.ServerReflectionResponse:
    (response,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10)
    assert not response.HasField("error_response"), response.error_response
    return response


def discover(channel: grpc.Channel, address: str, pool: descriptor_pool.DescriptorPool) -> list[Rpc]:
    """Every method of every service the server lists, with request classes built from what it sends."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed = [s.name for s in _reflect(stub, list_services="").list_services_response.service]
    rpcs = []
    for service_name in listed:
        if service_name.startswith(SKIPPED_SERVICES):
            continue
        files = {}
        pending = list(
            _reflect(stub, file_containing_symbol=service_name).file_descriptor_response.file_descriptor_proto
        )
        while pending:
            proto = descriptor_pb2.FileDescriptorProto.FromString(pending.pop())
            files.setdefault(proto.name, proto)
            for dependency in proto.dependency:
                if dependency not in files and not _known(pool, dependency):
                    reply = _reflect(stub, file_by_filename=dependency)
                    pending += reply.file_descriptor_response.file_descriptor_proto
        _add_in_order(pool, files)
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            rpcs.append(Rpc(address, service_name, method, GetMessageClass(method.input_type)))
    return rpcs


def _known(pool, filename: str) -> bool:
    try:
        pool.FindFileByName(filename)
        return True
    except KeyError:
        return False


def _add_in_order(pool, files: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    remaining = {name: proto for name, proto in files.items() if not _known(pool, name)}
    while remaining:
        ready = [n for n, p in remaining.items() if all(_known(pool, d) for d in p.dependency)]
        assert ready, f"unresolvable dependencies among {sorted(remaining)}"
        for name in ready:
            pool.Add(remaining.pop(name))


# ---------------------------------------------------------------- calls


CODES: dict[str, dict[str, int]] = {}  # method path → status code name → calls answered with it


def call(channel: grpc.Channel, rpc: Rpc, payload: bytes, metadata) -> tuple[grpc.StatusCode, str]:
    """Send `payload` (already serialized: raw bytes pass as they are) and return the status code."""
    code, details = _call(channel, rpc, payload, metadata)
    counts = CODES.setdefault(rpc.path, {})
    counts[code.name] = counts.get(code.name, 0) + 1
    return code, details


def _call(channel: grpc.Channel, rpc: Rpc, payload: bytes, metadata) -> tuple[grpc.StatusCode, str]:
    try:
        if rpc.streaming:
            stream = channel.unary_stream(rpc.path, request_serializer=lambda b: b, response_deserializer=lambda b: b)(
                payload, metadata=metadata, timeout=STREAM_TIMEOUT_S
            )
            try:
                next(stream, None)
            finally:
                stream.cancel()
            code = stream.code()
            # Cancelled by us after a first message (or none by the deadline): served.
            if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, None):
                return grpc.StatusCode.OK, ""
            return code, stream.details() or ""
        channel.unary_unary(rpc.path, request_serializer=lambda b: b, response_deserializer=lambda b: b)(
            payload, metadata=metadata, timeout=CALL_TIMEOUT_S
        )
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as err:
        return err.code(), err.details() or ""


def bearer(token: str):
    return (("authorization", f"Bearer {token}"),)


def probe_roles(channels: dict[str, grpc.Channel], rpcs: list[Rpc], tokens: dict[str, str]) -> None:
    """Which roles may call each method: those the call guard lets through with an empty request."""
    refused = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    for rpc in rpcs:
        for role, token in tokens.items():
            code, details = call(channels[rpc.address], rpc, b"", bearer(token))
            assert code not in NEVER, (rpc.path, role, code, details)
            if code not in refused:
                rpc.roles.append(role)


# ---------------------------------------------------------------- seeds: valid requests of the main RPCs


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_dicts(facts: dict[str, str]) -> dict[str, list[dict]]:
    now = datetime.now(UTC)
    person = {
        "identity": {"type": "IDENTITY_DOCUMENT_TYPE_CITIZEN_ID", "number": "024000000000"},
        "fullName": "Nguyễn Văn An",
        "dateOfBirth": "1985-03-14",
        "phone": "0900000000",
        "provinceCode": "24",
        "districtCode": "213",
    }
    sample = {
        "sampleBarcode": "{new}",
        "person": person,
        "testType": "TEST_TYPE_NAAT",
        "collectedAt": _rfc3339(now - timedelta(hours=3)),
        "samplingSite": "Trạm Y tế xã Tân Mỹ",
        "labOrgId": facts["lab_id"],
    }
    submission = {
        "sampleBarcode": facts["barcode"],
        "samplingOrgId": facts["unit_id"],
        "outcome": "OUTCOME_POSITIVE",
        "testedAt": _rfc3339(now - timedelta(hours=1)),
        "method": "RT-PCR cobas",
        "ctValue": 25.5,
        "labReference": "LIS-1",
    }
    principal = {"kind": "PRINCIPAL_KIND_PARTNER", "id": facts["partner_id"]}
    rule = {
        "provinceCode": "33",
        "entryType": "ENTRY_TYPE_TEST",
        "testType": "TEST_TYPE_NAAT",
        "validity": "259200s",
        "acceptedOutcomes": ["OUTCOME_NEGATIVE"],
        "description": "NAAT 72 h",
        "effectiveFrom": _rfc3339(now),
    }
    result = "covidtest.result.v1.ResultService/"
    admin = "covidtest.admin.v1.AdminService/"
    publish = "covidtest.publish.v1.PublishService/"
    verify = "covidtest.verify.v1.VerifyService/"
    return {
        result + "RegisterSamples": [
            {"requestId": "{rid}", "samples": [sample, {**sample, "person": {**person, "phone": "0900000001"}}]},
            {"requestId": "{rid}", "samples": [{**sample, "poolBarcode": "{new}"}]},
            {"requestId": "{rid}", "samples": [{**sample, "retestOfSampleBarcode": facts["barcode"]}]},
        ],
        result + "RecordResults": [
            {"requestId": "{rid}", "results": [submission, {**submission, "sampleBarcode": facts["other_barcode"]}]}
        ],
        result + "AmendResult": [{"requestId": "{rid}", **submission, "reason": "transcription error"}],
        result + "WithdrawResult": [
            {
                "requestId": "{rid}",
                "sampleBarcode": facts["other_barcode"],
                "samplingOrgId": facts["unit_id"],
                "reason": "WITHDRAWAL_REASON_OTHER",
                "reasonText": "mix-up",
            }
        ],
        result + "GetSample": [{"sampleBarcode": facts["barcode"], "samplingOrgId": facts["unit_id"]}],
        result + "ListResults": [
            {
                "pageSize": 10,
                "startTime": _rfc3339(now - timedelta(days=1)),
                "endTime": _rfc3339(now + timedelta(hours=1)),
                "outcomes": ["OUTCOME_NEGATIVE"],
            },
            {"pageSize": 1, "pageToken": facts["results_page_token"]},
        ],
        admin + "CreateOrganisation": [
            {"requestId": "{rid}", "name": "Lab {new}", "kind": "ORGANISATION_KIND_LAB", "provinceCode": "24"}
        ],
        admin + "CreatePartner": [{"requestId": "{rid}", "name": "Partner {new}"}],
        admin + "CreateCheckpointDevice": [{"requestId": "{rid}", "name": "Gate {new}", "provinceCode": "24"}],
        admin + "IssueCredential": [
            {
                "requestId": "{rid}",
                "principal": principal,
                "role": "ROLE_PARTNER",
                "description": "fuzz",
                "expiresAt": _rfc3339(now + timedelta(days=1)),
            }
        ],
        admin + "ListCredentials": [
            {"pageSize": 5, "principalKind": "PRINCIPAL_KIND_PARTNER", "principalId": facts["partner_id"]},
            {"pageSize": 1, "pageToken": facts["credentials_page_token"]},
        ],
        admin + "RevokeCredential": [{"requestId": "{rid}", "credentialId": str(uuid.uuid4()), "reason": "lost"}],
        admin + "RegisterClientCertificate": [
            {
                "requestId": "{rid}",
                "principal": principal,
                "role": "ROLE_PARTNER",
                "certificateDer": facts["certificate_der_b64"],
                "description": "fuzz",
            }
        ],
        admin + "GenerateSigningKey": [
            {"requestId": "{rid}", "algorithm": "SIGNING_ALGORITHM_ES256", "validity": "31536000s"}
        ],
        admin + "ImportSigningKey": [
            {
                "requestId": "{rid}",
                "privateKeyPem": facts["private_key_pem"],
                "certificatePem": facts["certificate_pem"],
            },
            {"requestId": "{rid}", "privateKeyPem": facts["private_key_pem"], "validity": "86400s"},
        ],
        admin + "ListPartners": [{"pageSize": 1, "pageToken": facts["partners_page_token"]}],
        admin + "ActivateSigningKey": [{"requestId": "{rid}", "signingKeyId": facts["signing_key_id"]}],
        admin + "RetireSigningKey": [{"requestId": "{rid}", "signingKeyId": facts["signing_key_id"]}],
        admin + "ImportTrustedCertificate": [
            {"requestId": "{rid}", "certificateDer": facts["certificate_der_b64"], "country": "DE"}
        ],
        admin + "RemoveTrustedCertificate": [{"requestId": "{rid}", "trustedCertificateId": str(uuid.uuid4())}],
        admin + "SetProvinceRule": [{"requestId": "{rid}", "rule": rule}],
        admin + "ListProvinceRules": [{"pageSize": 3, "provinceCode": "33", "includeHistory": True}],
        publish + "StreamResultEvents": [{"fromPosition": "1"}],
        publish + "AckResultEvents": [{"requestId": "{rid}", "position": facts["head"]}],
        publish + "GetFeedStatus": [{"partnerId": facts["partner_id"]}],
        publish + "GetCitizenResults": [
            {"identity": person["identity"], "dateOfBirth": "1985-03-14"},
            {"phone": "0900000000", "dateOfBirth": "1985-03-14"},
        ],
        publish + "GetCertificateQr": [
            {"certificateId": facts["certificate_id"], "format": "QR_IMAGE_FORMAT_PNG", "scale": 4}
        ],
        publish + "GetCertificateDocument": [
            {"certificateId": facts["certificate_id"], "paperSize": "PAPER_SIZE_A6"},
            {"certificateId": facts["certificate_id"]},
        ],
        verify + "Verify": [{"qr": facts["qr"], "scannedAt": _rfc3339(now)}],
        verify + "VerifyBatch": [{"scans": [{"qr": facts["qr"]}, {"qr": facts["qr"], "scannedAt": _rfc3339(now)}]}],
        verify + "GetTrustList": [{"sinceVersion": "0"}],
    }


def freshen(message: Message) -> Message:
    """Placeholders of seeds made unique per call: {rid} a new request id, {new} a new barcode or name part."""
    for fd, value in message.ListFields():
        if fd.message_type is not None:
            for item in value if fd.is_repeated else [value]:
                if not fd.message_type.GetOptions().map_entry:
                    freshen(item)
        elif fd.type == fd.TYPE_STRING and not fd.is_repeated and "{" in value:
            setattr(message, fd.name, value.replace("{rid}", str(uuid.uuid4())).replace("{new}", uuid.uuid4().hex[:12]))
    return message


# ---------------------------------------------------------------- the property


def credentials_for(rpc: Rpc, tokens: dict[str, str]) -> st.SearchStrategy:
    allowed = [bearer(tokens[r]) for r in rpc.roles]
    others = [bearer(t) for r, t in tokens.items() if r not in rpc.roles]
    garbage = [
        (),
        (("authorization", "Bearer ctk_garbage"),),
        (("authorization", "Basic Zm9vOmJhcg=="),),
        bearer("x" * 5000),
    ]
    return st.integers(0, 9).flatmap(
        lambda n: st.sampled_from(allowed) if n < 8 or not (others or garbage) else st.sampled_from(others + garbage)
    )


def requests_for(rpc: Rpc, strategies: MessageStrategies, seeds: list[Message]) -> st.SearchStrategy:
    built = strategies.message(rpc.method.input_type)
    options = [built.map(lambda m: ("built", m))]
    if seeds:
        mutants = strategies.mutant(seeds).map(lambda m: ("mutant", m))
        options += [mutants, mutants, st.sampled_from(seeds).map(lambda m: ("seed", m))]
    options.append(BYTES.map(lambda b: ("raw", b)))
    if seeds:  # a valid request's bytes, cut short or with one byte changed
        options.append(
            st.tuples(st.sampled_from(seeds), st.integers(0, 10_000), st.integers(0, 255)).map(
                lambda t: ("raw", _corrupt(t[0].SerializeToString(), t[1], t[2]))
            )
        )
    return st.one_of(options)


def _corrupt(data: bytes, where: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    i = where % len(data)
    return data[:i] if where % 2 else data[:i] + bytes([byte]) + data[i + 1 :]


def fuzz_method(channel: grpc.Channel, rpc: Rpc, strategies, seeds, tokens) -> None:
    @settings(max_examples=STREAM_EXAMPLES if rpc.streaming else EXAMPLES, **SETTINGS)
    @given(requests_for(rpc, strategies, seeds), credentials_for(rpc, tokens))
    def never_internal(request, metadata) -> None:
        kind, message = request
        if kind != "raw":
            message = freshen(type(message).FromString(message.SerializeToString()))
        payload = message if kind == "raw" else message.SerializeToString()
        note(f"{kind} request: {short(message)}")
        code, details = call(channel, rpc, payload, metadata)
        assert code not in NEVER, (
            f"{rpc.path} answered {code.name} ({details!r}) to a {kind} request {short(message)} "
            f"with metadata {short(metadata, 120)}"
        )

    never_internal()


def run_fuzzer(addresses: list[str], tokens: dict[str, str], facts: dict[str, str]) -> tuple[list[Rpc], list[str]]:
    channels = {
        a: grpc.insecure_channel(a, options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)]) for a in addresses
    }
    CODES.clear()
    try:
        pool = descriptor_pool.DescriptorPool()
        rpcs = [rpc for address in addresses for rpc in discover(channels[address], address, pool)]
        probe_roles(channels, rpcs, tokens)
        seeds = {
            path: [json_format.ParseDict(d, rpc_class(rpcs, path)()) for d in ds]
            for path, ds in seed_dicts(facts).items()
        }
        strategies = MessageStrategies(int(time.time()))
        failures = []
        for rpc in rpcs:
            try:
                fuzz_method(channels[rpc.address], rpc, strategies, seeds.get(rpc.path.lstrip("/"), []), tokens)
            except Exception as exc:  # noqa: BLE001 - every method is fuzzed; all failures are reported together
                failures += _messages(exc)
        return rpcs, failures
    finally:
        for channel in channels.values():
            channel.close()


def _messages(exc: BaseException) -> list[str]:
    """The assertion messages inside a Hypothesis failure (several when it found distinct bugs)."""
    if isinstance(exc, BaseExceptionGroup):
        return [m for inner in exc.exceptions for m in _messages(inner)]
    return [str(exc).split("\nassert ")[0]]


def rpc_class(rpcs: list[Rpc], path: str) -> type[Message]:
    (rpc,) = [r for r in rpcs if r.path.lstrip("/") == path]
    return rpc.request_class


async def test_no_rpc_answers_internal_or_unknown(fuzz_target):
    rpcs, failures = await asyncio.to_thread(run_fuzzer, fuzz_target.addresses, fuzz_target.tokens, fuzz_target.facts)

    # Not vacuous: reflection found every service of the contract, every method, and each method has a
    # role that gets past the call guard (so the fuzzed requests reach validation and business logic).
    found: dict[str, int] = {}
    for rpc in rpcs:
        found[rpc.service] = found.get(rpc.service, 0) + 1
    # (a service added later is fuzzed as well, without seeds)
    assert {name: found.get(name) for name in EXPECTED_SERVICES} == EXPECTED_SERVICES, found
    assert sum(found.values()) >= 35
    assert not [rpc.path for rpc in rpcs if not rpc.roles], "methods no principal may call"
    assert not failures, "\n\n".join(failures)
    # ... and every method was fuzzed, with answers other than a refusal of the caller.
    for path, counts in sorted(CODES.items()):
        print(path, sum(counts.values()), counts)  # shown with -s: what the fuzzer reached
        assert set(counts) - {"PERMISSION_DENIED", "UNAUTHENTICATED"}, (path, counts)
    assert {rpc.path for rpc in rpcs} == set(CODES)
