"""Regressions for what the RPC fuzzer (test_every_rpc) found answering INTERNAL or UNKNOWN, each reduced
to a minimal request.

1. Request bytes that are no valid message of the method's request type (b"\\x00": field number 0) were
   answered UNKNOWN by grpc.aio's own deserializer, on every RPC. The call guard now parses the request
   after admitting the caller: INVALID_ARGUMENT.
2. ImportTrustedCertificate with a certificate cryptography loads but cannot read throughout — an unknown
   X.509 version (x509.InvalidVersion, not a ValueError), a subject that fails to parse on first use
   (ValueError, or TypeError for a BIT STRING attribute), an extension present twice
   (x509.DuplicateExtension), or a public key of an unknown algorithm or of a type no DCC is signed with —
   ended in INTERNAL (while importing or while building the reply). RegisterClientCertificate (unknown
   version, BIT STRING attribute) and ImportSigningKey (unknown version) likewise. Such certificates are
   now refused with CERTIFICATE_INVALID: services.hcert.keys.load_certificate reads them throughout once.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from services.common.auth import Role
from services.gen.covidtest.admin.v1 import admin_service_pb2 as apb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.type.v1 import role_pb2
from tests.conftest import bearer, make_principal
from tests.grpc_errors import error_reason, violations

RAW_PATHS = [
    # (service address index in fuzz_target.addresses, method path, role allowed to call it, streaming)
    (0, "/covidtest.result.v1.ResultService/RegisterSamples", Role.SAMPLER, False),
    (0, "/covidtest.admin.v1.AdminService/CreatePartner", Role.OPERATOR, False),
    (1, "/covidtest.publish.v1.PublishService/GetCitizenResults", Role.PARTNER, False),
    (1, "/covidtest.publish.v1.PublishService/StreamResultEvents", Role.PARTNER, True),
    (2, "/covidtest.verify.v1.VerifyService/Verify", Role.CHECKPOINT, False),
]


async def _send_raw(address: str, path: str, payload: bytes, metadata, streaming: bool) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        identity = lambda b: b  # noqa: E731 - bytes travel as they are
        if streaming:
            call = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)(
                payload, metadata=metadata, timeout=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
        else:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)(
                    payload, metadata=metadata, timeout=5
                )
    return err.value


@pytest.mark.parametrize("payload", [b"\x00", b"\x0a\xff", b"\xff" * 16], ids=["field-0", "truncated", "ff"])
@pytest.mark.parametrize(("server", "path", "role", "streaming"), RAW_PATHS, ids=[p[1] for p in RAW_PATHS])
async def test_bytes_that_are_no_request_message_are_invalid_argument(
    fuzz_target, server, path, role, streaming, payload
):
    metadata = bearer(fuzz_target.tokens[role.value])
    err = await _send_raw(fuzz_target.addresses[server], path, payload, metadata, streaming)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert error_reason(err) == "INVALID_ARGUMENT"


async def test_bytes_that_are_no_request_message_are_checked_after_the_caller(fuzz_target):
    """The guard admits the caller first: without a credential, bad bytes are still UNAUTHENTICATED."""
    err = await _send_raw(fuzz_target.addresses[2], "/covidtest.verify.v1.VerifyService/Verify", b"\x00", (), False)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------- certificates cryptography cannot read


def _certificate(key=None, *, sign_with=None) -> bytes:
    """A document signer certificate of Germany, signed by its own key; issuer and subject names differ, so
    each byte pattern below occurs once."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    issuer = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), x509.NameAttribute(NameOID.COMMON_NAME, "CSCA")]
    )
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"), x509.NameAttribute(NameOID.COMMON_NAME, "DSC")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.1")]), critical=False)
        .sign(sign_with or key, None if isinstance(sign_with or key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _replace_once(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1, (old, der.count(old))
    return der.replace(old, new)


def unknown_version() -> bytes:
    return _replace_once(_certificate(), b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05")  # v6


def unparsable_subject() -> bytes:
    return _replace_once(_certificate(), b"\x0c\x03DSC", b"\x7e\x03DSC")  # no ASN.1 string type


def bit_string_subject_attribute() -> bytes:  # countryName as BIT STRING: cryptography raises TypeError
    return _replace_once(_certificate(), b"\x06\x03\x55\x04\x06\x13\x02DE\x31", b"\x06\x03\x55\x04\x06\x03\x02DE\x31")


def duplicate_extension() -> bytes:  # the key usage extension's OID turned into extended key usage's
    return _replace_once(_certificate(), b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x25")


def unknown_key_algorithm() -> bytes:  # id-ecPublicKey 1.2.840.10045.2.1 → 1.2.840.10045.2.5
    return _replace_once(_certificate(), b"\x2a\x86\x48\xce\x3d\x02\x01", b"\x2a\x86\x48\xce\x3d\x02\x05")


def p192_key() -> bytes:  # an EC curve no DCC algorithm uses (P-384 and P-521 are ES384 and ES512)
    return _certificate(ec.generate_private_key(ec.SECP192R1()))


def ed25519_key() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    return _certificate(key)


BAD_CERTIFICATES = [
    unknown_version,
    unparsable_subject,
    bit_string_subject_attribute,
    duplicate_extension,
    unknown_key_algorithm,
    p192_key,
    ed25519_key,
]


@pytest.fixture(scope="module")
async def operator(fuzz_target):
    async with grpc.aio.insecure_channel(fuzz_target.addresses[0]) as channel:
        yield admin_service_pb2_grpc.AdminServiceStub(channel), bearer(fuzz_target.tokens[Role.OPERATOR.value])


@pytest.mark.parametrize("build", BAD_CERTIFICATES, ids=[b.__name__ for b in BAD_CERTIFICATES])
@pytest.mark.parametrize("form", ["der", "pem"])
async def test_trusted_certificate_that_cannot_be_read_is_invalid(operator, build, form):
    stub, auth = operator
    der = build()
    certificate = (
        {"certificate_der": der}
        if form == "der"
        else {"certificate_pem": "-----BEGIN CERTIFICATE-----\n" + _b64_lines(der) + "-----END CERTIFICATE-----\n"}
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ImportTrustedCertificate(
            apb.ImportTrustedCertificateRequest(request_id=str(uuid.uuid4()), country="DE", **certificate),
            metadata=auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert error_reason(err.value) == "CERTIFICATE_INVALID"
    assert [reason for _, reason in violations(err.value)] == ["CERTIFICATE_INVALID"]


async def test_a_readable_certificate_is_still_imported(operator):
    stub, auth = operator
    reply = await stub.ImportTrustedCertificate(
        apb.ImportTrustedCertificateRequest(request_id=str(uuid.uuid4()), country="DE", certificate_der=_certificate()),
        metadata=auth,
    )
    assert reply.trusted_certificate.certificate.algorithm  # ES256


CLIENT_CERTIFICATES = [unknown_version, unparsable_subject, bit_string_subject_attribute, duplicate_extension]


@pytest.mark.parametrize("build", CLIENT_CERTIFICATES, ids=[b.__name__ for b in CLIENT_CERTIFICATES])
async def test_client_certificate_that_cannot_be_read_is_invalid(operator, build, database_url):
    stub, auth = operator
    partner = await make_principal(database_url, Role.PARTNER)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterClientCertificate(
            apb.RegisterClientCertificateRequest(
                request_id=str(uuid.uuid4()),
                principal=apb.Principal(kind=apb.PRINCIPAL_KIND_PARTNER, id=partner["id"]),
                role=role_pb2.ROLE_PARTNER,
                certificate_der=build(),
            ),
            metadata=auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert error_reason(err.value) == "CERTIFICATE_INVALID"


async def test_signing_key_certificate_of_unknown_version_is_invalid(operator):
    stub, auth = operator
    key = ec.generate_private_key(ec.SECP256R1())
    der = _replace_once(_certificate(key), b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ImportSigningKey(
            apb.ImportSigningKeyRequest(
                request_id=str(uuid.uuid4()),
                private_key_pem=key_pem,
                certificate_pem="-----BEGIN CERTIFICATE-----\n" + _b64_lines(der) + "-----END CERTIFICATE-----\n",
            ),
            metadata=auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert error_reason(err.value) == "CERTIFICATE_INVALID"


def _b64_lines(der: bytes) -> str:
    text = base64.b64encode(der).decode()
    return "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))
