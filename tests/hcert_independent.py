"""An independent HCERT decoder for tests: cbor2, zlib, base45 and cryptography used directly.

It shares no code with services.hcert, so a test that decodes with it checks the platform's
certificates the way a foreign DCC verifier would; `assert_schema_valid` checks a DCC payload against
the published JSON schema (resolved locally, no network).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "services" / "hcert" / "dcc" / "schema"
QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


# --- schema -------------------------------------------------------------------------------------


def _schema_registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))

    def no_network(uri: str):
        raise LookupError(f"schema reference {uri} is not local")

    return Registry(retrieve=no_network).with_resources(resources)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return Draft202012Validator(schema, registry=_schema_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


COMBINED = _validator("DCC.combined-schema.json")
SPLIT = _validator("DCC.schema.json")  # the same schema as separate files, $refs resolved locally


def assert_schema_valid(dcc: dict) -> None:
    for validator in (COMBINED, SPLIT):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(dcc)]
        assert not errors, errors


# --- independent decoder --------------------------------------------------------------------------


def decode_and_verify(text: str, certificate: x509.Certificate | bytes) -> dict:
    """Decode an HCERT without project code and check its signature with `certificate` (object or DER).

    Returns {"header", "unprotected", "cose", "claims"}."""
    if isinstance(certificate, bytes):
        certificate = x509.load_der_x509_certificate(certificate)
    assert text.startswith("HC1:")
    assert set(text) <= QR_ALPHANUMERIC
    compressed = base45.b45decode(text[4:])
    assert compressed[:2] == b"\x78\xda"  # zlib, best compression, like real DCCs
    cose = zlib.decompress(compressed)
    message = cbor2.loads(cose)
    assert isinstance(message, cbor2.CBORTag) and message.tag == 18
    protected, unprotected, cwt_bytes, signature = message.value
    assert isinstance(protected, bytes) and isinstance(cwt_bytes, bytes) and isinstance(signature, bytes)
    header = cbor2.loads(protected)
    kid = header.get(4, unprotected.get(4))
    assert kid == hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()[:8]
    sig_structure = cbor2.dumps(["Signature1", protected, b"", cwt_bytes])
    public_key = certificate.public_key()
    if header[1] == -7:
        assert isinstance(public_key, ec.EllipticCurvePublicKey) and len(signature) == 64
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, sig_structure, ec.ECDSA(hashes.SHA256()))
    elif header[1] == -37:
        assert isinstance(public_key, rsa.RSAPublicKey) and len(signature) == public_key.key_size // 8
        public_key.verify(
            signature, sig_structure, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    else:
        raise AssertionError(f"unexpected alg {header[1]}")
    return {"header": header, "unprotected": unprotected, "cose": cose, "claims": cbor2.loads(cwt_bytes)}
