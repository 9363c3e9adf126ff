"""HCERT encoding: CWT → COSE_Sign1 → zlib → Base45 → "HC1:" text.

Signing runs thousands of times a second, so the COSE framing is written by hand around precomputed
byte strings (the protected header and the fixed parts of Sig_structure), and Base45 uses a 65,536-entry
table of three-character chunks (≈10 µs for a typical certificate, against ≈80 µs for the `base45`
package; the tests compare both on random data). The table (≈4 MB, ≈15 ms to build) is built by the
first Signer, or by the first b45encode call.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.hcert.keys import SigningKeyMaterial

PREFIX = "HC1:"
COSE_SIGN1_TAG = 18
COSE_ALGORITHMS = {"ES256": -7, "PS256": -37}
# COSE header labels
HEADER_ALG, HEADER_KID = 1, 4
# CWT claim keys
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_DCC_V1 = 1
PSS_SALT_LENGTH = 32


def _bstr_head(length: int) -> bytes:
    """CBOR major type 2 (byte string) header for `length` bytes."""
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + struct.pack(">H", length)
    if length < 0x100000000:
        return b"\x5a" + struct.pack(">I", length)
    return b"\x5b" + struct.pack(">Q", length)


class Signer:
    """Signs CWT payloads as COSE_Sign1 (tag 18) with one signing key.

    Protected header {1: alg, 4: kid} (the kid only in the protected header), empty unprotected
    header. ES256 signatures are raw r‖s (64 bytes); PS256 is RSASSA-PSS with SHA-256, MGF1-SHA-256
    and a 32-byte salt. Thread-safe; create one per key and reuse it.
    """

    __slots__ = ("material", "kid", "algorithm", "_sig_prefix", "_cose_prefix", "_key", "_sign")

    def __init__(self, material: SigningKeyMaterial):
        self.material = material
        self.kid = material.kid
        self.algorithm = material.algorithm
        protected = cbor2.dumps({HEADER_ALG: COSE_ALGORITHMS[material.algorithm], HEADER_KID: material.kid})
        protected_bstr = _bstr_head(len(protected)) + protected
        # Sig_structure = ["Signature1", protected, external_aad = b"", payload]
        self._sig_prefix = b"\x84" + cbor2.dumps("Signature1") + protected_bstr + b"\x40"
        # COSE_Sign1 = 18([protected, {}, payload, signature])
        # (0xd2 = major type 6, tag 18; 0x84 = array of 4; 0xa0 = empty map)
        self._cose_prefix = b"\xd2\x84" + protected_bstr + b"\xa0"
        self._key = material.key
        if material.algorithm == "ES256":
            self._sign = self._make_es256()
        else:
            self._sign = self._make_ps256()
        _pairs()  # build the Base45 table now rather than on the first certificate

    def _make_es256(self):
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)  # ES256 material holds a P-256 key
        sign, ecdsa = self._key.sign, ec.ECDSA(hashes.SHA256())

        def es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(sign(data, ecdsa))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        return es256

    def _make_ps256(self):
        assert isinstance(self._key, rsa.RSAPrivateKey)  # PS256 material holds an RSA key
        sign = self._key.sign
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
        sha256 = hashes.SHA256()

        def ps256(data: bytes) -> bytes:
            return sign(data, pss, sha256)

        return ps256

    def sign(self, payload: bytes) -> bytes:
        """The CBOR-encoded COSE_Sign1 message carrying `payload` (the encoded CWT)."""
        payload_bstr = _bstr_head(len(payload)) + payload
        signature = self._sign(self._sig_prefix + payload_bstr)
        return b"".join((self._cose_prefix, payload_bstr, _bstr_head(len(signature)), signature))


def encode_cwt(dcc: dict, *, issuer: str = "VN", issued_at: int, expires_at: int) -> bytes:
    """The CWT claims {1: iss, 4: exp, 6: iat, -260: {1: dcc}} as CBOR (keys in deterministic order).

    `issued_at` and `expires_at` are whole seconds since the epoch (integers, as the DCC requires).
    """
    if not (isinstance(issuer, str) and len(issuer) == 2 and issuer.isascii() and issuer.isupper()):
        raise ValueError("issuer must be an ISO 3166-1 alpha-2 code in upper case")
    for name, value in (("issued_at", issued_at), ("expires_at", expires_at)):
        if type(value) is not int:  # not float, not bool
            raise ValueError(f"{name} must be an int (seconds since the epoch)")
    if expires_at <= issued_at:
        raise ValueError("expires_at must be after issued_at")
    return cbor2.dumps(
        {CLAIM_ISS: issuer, CLAIM_EXP: expires_at, CLAIM_IAT: issued_at, CLAIM_HCERT: {HCERT_DCC_V1: dcc}}
    )


# Base45 (RFC 9285). _PAIRS[n] is the three-character encoding of the 16-bit big-endian value n.
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_PAIRS: list[str] = []
_SWAP = sys.byteorder == "little"


def _pairs() -> list[str]:
    global _PAIRS
    if not _PAIRS:
        a = BASE45_ALPHABET
        _PAIRS = [a[n % 45] + a[n // 45 % 45] + a[n // 2025] for n in range(0x10000)]
    return _PAIRS


def b45encode(data: bytes) -> str:
    """Base45 text of `data` (same output as `base45.b45encode(data).decode()`)."""
    pairs = _PAIRS or _pairs()
    even = len(data) & ~1
    words = array("H", data[:even])
    if _SWAP:
        words.byteswap()
    text = "".join(map(pairs.__getitem__, words))
    if len(data) & 1:
        high, low = divmod(data[-1], 45)
        text += BASE45_ALPHABET[low] + BASE45_ALPHABET[high]
    return text


def encode_hcert(dcc: dict, *, signer: Signer, issued_at: int, expires_at: int, issuer: str = "VN") -> str:
    """The QR text "HC1:" + Base45(zlib(COSE_Sign1(CWT))) for a DCC payload."""
    cose = signer.sign(encode_cwt(dcc, issuer=issuer, issued_at=issued_at, expires_at=expires_at))
    return PREFIX + b45encode(zlib.compress(cose, 9))
