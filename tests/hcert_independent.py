"""An independent HCERT decoder for tests: cbor2, zlib, base45 and cryptography used directly.

It shares no code with services.common.hcert, so a test that decodes with it checks the platform's
certificates the way a foreign DCC verifier would.
"""

from __future__ import annotations

import zlib

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def decode_and_verify(qr: str, certificate_der: bytes) -> tuple[dict, dict]:
    """(protected header, CWT claims) of a HC1 string, after checking its signature with the certificate."""
    assert qr.startswith("HC1:")
    cose = zlib.decompress(base45.b45decode(qr[4:]))
    message = cbor2.loads(cose)
    assert isinstance(message, cbor2.CBORTag) and message.tag == 18, "COSE_Sign1 tag"
    protected_bytes, unprotected, payload_bytes, signature = message.value
    protected = cbor2.loads(protected_bytes)
    to_sign = cbor2.dumps(["Signature1", protected_bytes, b"", payload_bytes])
    public_key = x509.load_der_x509_certificate(certificate_der).public_key()
    if protected[1] == -7:
        assert isinstance(public_key, ec.EllipticCurvePublicKey) and len(signature) == 64
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))
    else:
        assert protected[1] == -37 and isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, to_sign, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                          hashes.SHA256())
    return protected, cbor2.loads(payload_bytes)
