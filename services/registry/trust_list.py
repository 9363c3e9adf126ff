"""The trust list: which document signer certificates verify HCERTs, as devices and verify_svc see it.

Our own signing keys (from creation until retired) and imported foreign certificates both enter it.
Every entry and exit is appended to `trust_list_changes` (devices fetch changes by version) and
NOTIFYs verify_svc, which reloads its in-memory list at once. The SQL is in `repository.trust_list`.
"""

from __future__ import annotations

import hashlib

import asyncpg
from cryptography import x509

from services.common.protoconv import enum_value, timestamp
from services.gen.covidtest.type.v1 import certificate_pb2
from services.hcert import keys as hkeys
from services.registry.repository import trust_list as repo


async def trust_list_change(conn: asyncpg.Connection, certificate_der: bytes, country: str, change: str) -> None:
    """Record that a certificate entered or left the trust list (devices fetch changes by version)."""
    await repo.insert_change(
        conn,
        sha256_fingerprint=hashlib.sha256(certificate_der).digest(),
        kid=hkeys.kid_of(certificate_der),
        certificate_der=certificate_der,
        country=country,
        change=change,
    )
    await repo.notify_trust_list(conn)


def signing_certificate(der: bytes, country: str) -> certificate_pb2.SigningCertificate:
    """The trust-list form of a document signer certificate (our keys and imported ones alike)."""
    cert = x509.load_der_x509_certificate(der)
    return certificate_pb2.SigningCertificate(
        kid=hkeys.kid_of(der),
        certificate_der=der,
        country=country,
        not_before=timestamp(cert.not_valid_before_utc),
        not_after=timestamp(cert.not_valid_after_utc),
        allowed_entry_types=[enum_value(certificate_pb2.EntryType, t) for t in hkeys.allowed_entry_types(cert)],
        sha256_fingerprint=hashlib.sha256(der).hexdigest(),
        algorithm=enum_value(certificate_pb2.SigningAlgorithm, hkeys.verification_algorithm(cert.public_key())),
    )
