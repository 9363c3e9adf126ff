"""The whole platform in-process for the fuzzer: result_svc (with AdminService), publish_svc and verify_svc on
one database, a principal of every role, and a few real records (released results, a certificate, a signing
key) that the fuzzer's seed requests point at, so mutations of valid requests reach past the first check."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.auth import Role
from services.gen.covidtest.admin.v1 import admin_service_pb2 as apb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from tests.conftest import (
    bearer,
    make_principal,
    start_verify_svc,
)
from tests.publish_svc.conftest import running_platform


@dataclass
class FuzzTarget:
    """Addresses, a token per role and the ids of real records, for the fuzzer (which runs in a thread)."""

    addresses: list[str]
    tokens: dict[str, str]  # role name → bearer token
    facts: dict[str, str] = field(default_factory=dict)  # ids of real records seeds refer to


async def _page_tokens(channel, tokens: dict[str, str]) -> dict[str, str]:
    """A real next_page_token of some lists, so seeds carry well-formed tokens that mutations then bend."""
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)
    results = result_service_pb2_grpc.ResultServiceStub(channel)
    operator, lab = bearer(tokens[Role.OPERATOR.value]), bearer(tokens[Role.LAB.value])
    partners = await admin.ListPartners(apb.ListPartnersRequest(page_size=1), metadata=operator)
    credentials = await admin.ListCredentials(apb.ListCredentialsRequest(page_size=1), metadata=operator)
    listed = await results.ListResults(rpb.ListResultsRequest(page_size=1), metadata=lab)
    return {
        "partners_page_token": partners.next_page_token,
        "credentials_page_token": credentials.next_page_token,
        "results_page_token": listed.next_page_token,
    }


def _key_and_certificate() -> dict[str, str]:
    """A P-256 key with a self-signed certificate, in PEM, for ImportSigningKey seeds."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, "DSC")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return {
        "private_key_pem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


@pytest.fixture(scope="module")
async def fuzz_target(database_url):
    # The fuzzer calls far faster than any partner or checkpoint device: a limit would answer
    # RESOURCE_EXHAUSTED before the handler sees the request.
    async with running_platform(
        database_url,
        FEED_HEARTBEAT_SECONDS="0.2",
        CITIZEN_LOOKUPS_PER_MINUTE="100000000",
        SCANS_PER_MINUTE="100000000",
    ) as platform:
        verify_run = await start_verify_svc(platform.env)
        try:
            key = platform.key
            partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
            device = await make_principal(database_url, Role.CHECKPOINT, province="24")
            # Real records: released results (one of them keeps a certificate), so seeds name existing rows.
            start = await platform.head() + 1
            barcodes = await platform.release(3)
            events = await platform.collect(partner["token"], start, 3)
            certified = next(e for e in events if e.certificate.certificate_id)
            target = FuzzTarget(
                addresses=[
                    f"127.0.0.1:{run.port}" for run in (platform.result_server, platform.publish_server, verify_run)
                ],
                tokens={
                    Role.SAMPLER.value: platform.unit["token"],
                    Role.LAB.value: platform.lab["token"],
                    Role.OPERATOR.value: platform.operator["token"],
                    Role.PARTNER.value: partner["token"],
                    Role.CHECKPOINT.value: device["token"],
                },
                facts={
                    "lab_id": platform.lab["id"],
                    "unit_id": platform.unit["id"],
                    "partner_id": partner["id"],
                    "device_id": device["id"],
                    "barcode": barcodes[0],
                    "other_barcode": barcodes[1],
                    "certificate_id": certified.certificate.certificate_id,
                    "qr": certified.certificate.qr,
                    "signing_key_id": str(key.id),
                    "certificate_der_b64": base64.b64encode(key.certificate_der).decode(),
                    "head": str(await platform.head()),
                },
            )
            target.facts.update(await _page_tokens(platform.channels[0], target.tokens))
            target.facts.update(_key_and_certificate())
            yield target
        finally:
            await verify_run.stop(0)
