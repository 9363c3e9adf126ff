"""Signature algorithms of foreign signing certificates (issue 16): ES256, ES384 and ES512 where the
curve matches, PS256; a key no DCC algorithm uses (Ed25519) is never an exception, only "no"."""

from __future__ import annotations

import dataclasses
import time
import zlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from services.common.errors import InvalidArgument
from services.hcert import codec, keys
from services.hcert import decode as hd
from services.registry import trusted_certificates

CURVES = {"ES256": (ec.SECP256R1(), hashes.SHA256(), 32, -7), "ES384": (ec.SECP384R1(), hashes.SHA384(), 48, -35),
          "ES512": (ec.SECP521R1(), hashes.SHA512(), 66, -36)}  # fmt: skip


def foreign_certificate(key, country: str = "DE") -> bytes:
    """A self-signed document signer certificate (DER) for `key`, valid around now."""
    name = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, country), x509.NameAttribute(NameOID.COMMON_NAME, "DSC")]
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
    )  # fmt: skip
    hash_ = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, hash_).public_bytes(Encoding.DER)


def foreign_test_dcc() -> dict:
    entry = {"tg": "840539006", "tt": "LP6464-4", "sc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "tr": "260415000", "tc": "Labor", "co": "DE", "is": "RKI", "ci": "URN:UVCI:01:DE:ALG#1"}  # fmt: skip
    return {"ver": "1.3.0", "nam": {"fn": "Muller", "fnt": "MULLER"}, "dob": "1980-05-05", "t": [entry]}


def ecdsa_qr(key, algorithm: str, certificate_der: bytes, *, alg_id: int | None = None) -> str:
    """QR text of a DCC signed with an EC key as `algorithm` (the alg header may be overridden)."""
    _, hash_, size, cose_alg = CURVES[algorithm]
    now = int(time.time())
    cwt = codec.encode_cwt(foreign_test_dcc(), issued_at=now - 60, expires_at=now + 86400)
    protected = cbor2.dumps({1: cose_alg if alg_id is None else alg_id, 4: keys.kid_of(certificate_der)})
    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", protected, b"", cwt]), ec.ECDSA(hash_)))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cwt, r.to_bytes(size, "big") + s.to_bytes(size, "big")]))
    return codec.PREFIX + codec.b45encode(zlib.compress(cose, 9))


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512"])
def test_each_ecdsa_curve_verifies_with_its_own_algorithm_only(algorithm):
    key = ec.generate_private_key(CURVES[algorithm][0])
    der = foreign_certificate(key)
    assert keys.verification_algorithm(key.public_key()) == algorithm
    decoded = hd.decode(ecdsa_qr(key, algorithm, der))
    assert hd.verify_signature(decoded, der)
    # The same key declared under another algorithm, or another key's certificate: no.
    for other, (_, _, _, other_id) in CURVES.items():
        if other != algorithm:
            assert not hd.verify_signature(hd.decode(ecdsa_qr(key, algorithm, der, alg_id=other_id)), der)
    stranger = foreign_certificate(ec.generate_private_key(CURVES[algorithm][0]))
    assert not hd.verify_signature(decoded, stranger)
    broken = decoded.signature[:-1] + bytes([decoded.signature[-1] ^ 1])
    assert not hd.verify_signature(dataclasses.replace(decoded, signature=broken), der)


def test_an_unsupported_key_is_refused_by_name_and_never_raises_in_verification():
    ed = ed25519.Ed25519PrivateKey.generate()
    der = foreign_certificate(ed)
    with pytest.raises(ValueError, match="Ed25519"):
        keys.verification_algorithm(ed.public_key())
    decoded = hd.decode(ecdsa_qr(ec.generate_private_key(ec.SECP256R1()), "ES256", der))  # kid of the Ed25519 cert
    assert hd.verify_signature(decoded, der) is False
    with pytest.raises(ValueError, match="secp192r1|P-256, P-384 or P-521"):
        keys.verification_algorithm(ec.generate_private_key(ec.SECP192R1()).public_key())


def test_import_takes_p384_and_p521_and_refuses_ed25519_naming_the_key_type():
    for curve in (ec.SECP384R1(), ec.SECP521R1()):
        assert trusted_certificates.parse_certificate(foreign_certificate(ec.generate_private_key(curve)))
    with pytest.raises(InvalidArgument) as err:
        trusted_certificates.parse_certificate(foreign_certificate(ed25519.Ed25519PrivateKey.generate()))
    (violation,) = err.value.violations
    assert violation.reason == "CERTIFICATE_INVALID" and "Ed25519" in violation.description


def test_our_own_signing_keys_stay_es256_and_ps256():
    with pytest.raises(ValueError):
        keys.key_algorithm(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert keys.ALGORITHMS == ("ES256", "PS256")
