"""HCERT decoding and signature verification: "HC1:" text → Base45 → zlib → COSE_Sign1 → CWT → DCC.

The input is untrusted (whatever a checkpoint scanner read), so every step is strict and bounded:

- `decode` raises only `MalformedError` (with the `Stage` that failed and a short English reason that
  never contains personal data) or returns a `DecodedHcert`; any unexpected exception inside a stage
  is converted. Decompression stops at 64 KiB of output (zip bombs), CBOR nesting is limited, CBOR
  semantic tags (dates, bignums, regular expressions, shared references, …) are not interpreted, and
  trailing bytes after a CBOR item or the zlib stream are rejected.
- Base45 decodes with a handful of C-level calls (see b45decode): ≈5 µs for a 500-character text.
- The payload is checked against the DCC schema of the version it declares in `ver` (every published
  version, 1.0.0 … 1.3.3, ships in dcc/schema-versions; an unpublished minor or patch version is checked
  against the nearest older one of its major version). The validators (draft 2020-12, jsonschema-rs)
  are compiled once at import, resolve nothing over the network, and check the `date` and `date-time`
  formats (RFC 3339, leap second included).

Behaviour fixed by the public DCC conformance cases (tests/conformance/dcc/common, see
tests/hcert/test_decode_conformance.py):

- Uncompressed COSE after Base45 is rejected (Z2), as is a broken zlib stream (Z1).
- COSE_Sign1 is tagged (18) or untagged (HCERT §3.3.1 allows both), optionally inside a CWT tag 61
  (CO28), which must then hold the tagged form (RFC 8392 §6); COSE_Sign (tag 98), another tag or any
  other shape is rejected.
- `kid` and `alg` are read from the protected header first, the unprotected header second (CO19 has
  its kid, CO20 its kid and alg only in the unprotected header, and both must verify). The chosen kid must be exactly
  8 bytes (CO22, CO23: a wrong protected kid is not rescued by a correct unprotected one; CO21: a
  wrong unprotected kid is ignored when the protected one is present). A missing kid, a missing
  alg, or an alg other than ES256 (-7), ES384 (-35), ES512 (-36) or PS256 (-37) is a COSE failure too.
  Taking alg from the unprotected header does not open a downgrade: `verify_signature` only accepts
  the one algorithm that matches the trusted key's type.
- The CWT must be a map with `iat` (6) and `exp` (4) as NumericDates (0 … MAX_TIMESTAMP, integer or
  float as RFC 8392 allows; a float `iat` is rounded up, `exp` down) and `hcert` (-260) → {1: DCC map};
  `iss` (1) is optional (eHN specification) but must be text when present.
- The DCC must hold exactly one of `t`, `v`, `r` with exactly one entry (DGC2: "adheres to schema
  but contains multiple certificates" must fail schema validation); this rule is checked even with
  `check_schema=False`, because `entry_type` depends on it.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import cbor2
import jsonschema_rs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from services.hcert import keys
from services.hcert.codec import (
    BASE45_ALPHABET,
    CLAIM_EXP,
    CLAIM_HCERT,
    CLAIM_IAT,
    CLAIM_ISS,
    COSE_SIGN1_TAG,
    HCERT_DCC_V1,
    HEADER_ALG,
    HEADER_KID,
    PREFIX,
    PSS_SALT_LENGTH,
)

# The largest QR code (version 40, error correction L) holds 4,296 alphanumeric characters.
MAX_QR_LENGTH = 4296
MAX_DECOMPRESSED = 64 * 1024
MAX_CBOR_DEPTH = 16
CWT_TAG, COSE_SIGN_TAG = 61, 98
# The COSE algorithms a DCC may be signed with (RFC 9053; the HCERT specification names ES256 and PS256,
# and issuers also use ES384 and ES512); keyed by int | None since a header may lack `alg`.
COSE_ALGORITHMS: dict[int | None, str] = {-7: "ES256", -35: "ES384", -36: "ES512", -37: "PS256"}
# ECDSA per algorithm: the hash and the byte length of r and of s in the raw r‖s signature.
_ECDSA = {
    "ES256": (ec.ECDSA(hashes.SHA256()), 32),
    "ES384": (ec.ECDSA(hashes.SHA384()), 48),
    "ES512": (ec.ECDSA(hashes.SHA512()), 66),
}
# iat and exp lie between the epoch and 9999-12-31T23:59:59Z, so datetime.fromtimestamp never fails on them.
MAX_TIMESTAMP = 253_402_300_799
ENTRY_KEYS = {"t": "TEST", "v": "VACCINATION", "r": "RECOVERY"}
SCHEMA_VERSIONS_DIR = Path(__file__).resolve().parent / "dcc" / "schema-versions"


class Stage(str, Enum):
    """The decoding step that failed, in decoding order."""

    PREFIX = "PREFIX"
    BASE45 = "BASE45"
    ZLIB = "ZLIB"
    COSE = "COSE"
    CBOR = "CBOR"
    SCHEMA = "SCHEMA"


class MalformedError(Exception):
    """The QR text is not a decodable HCERT. `reason` is short English without personal data."""

    def __init__(self, stage: Stage, reason: str):
        super().__init__(f"{stage.value}: {reason}")
        self.stage = stage
        self.reason = reason

    def __reduce__(self):  # picklable despite the two-argument constructor
        return (type(self), (self.stage, self.reason))


# --- Base45 ---------------------------------------------------------------------------------------


# Each character's value (0-44); 0xFF for a byte outside the alphabet.
_B45_VALUES = bytes(BASE45_ALPHABET.index(chr(byte)) if chr(byte) in BASE45_ALPHABET else 0xFF for byte in range(256))
_SLOT = 3  # bytes per character in the widened number below
# Groups are c0 + 45·c1 + 2025·c2. With every character's value in its own 24-bit slot of one big
# integer X (first character most significant), X · (1 + 45·2²⁴ + 2025·2⁴⁸) holds in the slot of each
# group's first character exactly that sum: at most 44·2071 = 91,124 < 2²⁴, so slots never carry.
_B45_WEIGHTS = 1 + (45 << 24) + (2025 << 48)


def b45decode(text: str) -> bytes:
    """Strict Base45 (RFC 9285) decoding; ValueError for any character outside the 45 (lower case and
    newlines included), a length of 3n+1, or a group whose value overflows (e.g. "GGW", "V5").

    All the per-character work runs in C (bytes.translate, extended slices, one big-integer product),
    about 5 µs for a 500-character QR where a per-group table lookup took about 45 µs."""
    if isinstance(text, str):
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("invalid Base45: non-ASCII character") from None
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        raise TypeError("Base45 input must be str or bytes")
    values = data.translate(_B45_VALUES)
    if b"\xff" in values:
        raise ValueError("invalid Base45: character outside the alphabet")
    groups, tail = divmod(len(values), 3)
    if tail == 1:
        raise ValueError("invalid Base45: length leaves a single character")
    chars = 3 * groups
    widened = bytearray(_SLOT * chars)
    widened[_SLOT - 1 :: _SLOT] = values[:chars]
    # The product has chars + 2 slots; the group starting at character 3k sits in slot 3k + 2 from the top.
    product = (int.from_bytes(widened, "big") * _B45_WEIGHTS).to_bytes(_SLOT * (chars + 2), "big")
    step, first = 3 * _SLOT, 2 * _SLOT  # a group's slot: its high byte, then its two bytes of output
    if any(product[first::step]):  # a group above 0xFFFF
        raise ValueError("invalid Base45: group value too large")
    out = bytearray(2 * groups)
    out[0::2] = product[first + 1 :: step]
    out[1::2] = product[first + 2 :: step]
    if tail:
        value = values[-2] + 45 * values[-1]
        if value > 0xFF:
            raise ValueError("invalid Base45: group value too large")
        out.append(value)
    return bytes(out)


# --- CBOR ------------------------------------------------------------------------------------------


def _raw_tag(tag: int):
    def keep(value, immutable):
        return cbor2.CBORTag(tag, value)

    return keep


# Tags cbor2 would otherwise turn into Python objects (datetime, Decimal, Fraction, re.Pattern, email
# messages, IP addresses, shared/string references, sets …). HCERTs use none of them; interpreting
# them on untrusted input only costs time (a huge Fraction's gcd) or raises odd exceptions, so they
# stay plain CBORTag objects, which the structure checks below then reject.
_PLAIN_TAGS = {
    tag: _raw_tag(tag)
    for tag in (
        0,
        1,
        2,
        3,
        4,
        5,
        21,
        22,
        23,
        24,
        25,
        28,
        29,
        30,
        32,
        33,
        34,
        35,
        36,
        37,
        52,
        54,
        100,
        256,
        258,
        260,
        261,
        262,
        263,
        1004,
        43000,
        55799,
    )
}


def _cbor_loads(data: bytes) -> Any:
    """One CBOR item, strictly: no trailing bytes, no duplicate map keys, bounded nesting."""
    fp = io.BytesIO(data)
    item = cbor2.CBORDecoder(
        fp, semantic_decoders=_PLAIN_TAGS, allow_duplicate_keys=False, max_depth=MAX_CBOR_DEPTH
    ).decode()
    if fp.tell() != len(data):
        raise ValueError("trailing bytes after the CBOR item")
    return item


def _json_compatible(value: Any) -> bool:
    """Whether a decoded CBOR value is plain JSON data (maps with text keys, arrays, text, finite
    numbers, booleans, null) — no byte strings, tags, undefined or other simple values."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in (str, int, bool) and item is not None:
            return False
    return True


# --- schema ---------------------------------------------------------------------------------------


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)", re.ASCII)
SchemaVersion = tuple[int, int, int]


def _compile_validators() -> dict[SchemaVersion, jsonschema_rs.Validator]:
    """Every published DCC schema version (dcc/schema-versions/X.Y.Z.combined-schema.json: each
    self-contained, draft 2020-12) compiled by jsonschema-rs, with the `date` and `date-time` formats
    checked and nothing fetched over the network. jsonschema-rs validates a DCC in about 1 µs where the
    pure-Python jsonschema took about 130 µs, the largest single cost of a first scan at a checkpoint
    (docs/benchmarks.md). Its `pattern` keyword follows ECMA-262 as the JSON Schema specification says
    (`\\d` is an ASCII digit only)."""
    validators = {}
    for path in SCHEMA_VERSIONS_DIR.glob("*.combined-schema.json"):
        match = _VERSION.fullmatch(path.name.removesuffix(".combined-schema.json"))
        if match is None:
            continue
        schema = json.loads(path.read_text(encoding="utf-8"))
        validators[(int(match[1]), int(match[2]), int(match[3]))] = jsonschema_rs.validator_for(
            schema, validate_formats=True, ignore_unknown_formats=False
        )
    return validators


_VALIDATORS = _compile_validators()
SCHEMA_VERSIONS = tuple(sorted(_VALIDATORS))


def schema_version_for(ver: object) -> SchemaVersion | None:
    """The schema a DCC declaring `ver` is checked against: that version if it was published, else the
    nearest older one of the same major version (a newer minor or patch only adds optional content);
    None for a missing or malformed `ver` or a major version without any published schema."""
    if not isinstance(ver, str) or (match := _VERSION.fullmatch(ver)) is None:
        return None
    declared = (int(match[1]), int(match[2]), int(match[3]))
    known = [v for v in SCHEMA_VERSIONS if v[0] == declared[0] and v <= declared]
    return max(known) if known else None


def schema_failure(dcc: dict) -> str | None:
    """None if the DCC matches the schema of the version it declares, else where it fails (a JSON
    pointer and the keyword, never the offending value, which may be personal data)."""
    version = schema_version_for(dcc.get("ver"))
    if version is None:
        return "the DCC declares no schema version this verifier knows (ver)"
    validator = _VALIDATORS[version]
    if validator.is_valid(dcc):
        return None
    error = next(iter(validator.iter_errors(dcc)))
    pointer = "".join(f"/{part}" for part in error.instance_path) or "/"
    keyword = error.schema_path[-1] if error.schema_path else "schema"
    return f"the DCC does not match the schema {'.'.join(map(str, version))} at {pointer} ({keyword})"


# --- decoding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedHcert:
    """A decoded (not yet verified) HCERT.

    `kid` and `alg` are never None after `decode` (a missing one is a COSE failure); the Optional
    types keep the agreed interface. `payload` is the CWT exactly as signed.
    """

    kid: bytes | None
    alg: int | None
    protected: bytes
    payload: bytes
    signature: bytes
    claims: dict
    issuer: str | None
    issued_at: int | None
    expires_at: int | None
    dcc: dict
    entry_type: str

    @functools.cached_property
    def sig_structure(self) -> bytes:
        """The bytes the signature covers: CBOR ["Signature1", protected, b"", payload]."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


def _unprefix(qr: str) -> str:
    if not isinstance(qr, str):
        raise MalformedError(Stage.PREFIX, "the QR content is not text")
    if not qr.startswith(PREFIX):
        raise MalformedError(Stage.PREFIX, 'the text does not start with the context identifier "HC1:"')
    return qr[len(PREFIX) :]


def _base45(body: str) -> bytes:
    if len(body) > MAX_QR_LENGTH:
        raise MalformedError(Stage.BASE45, "the text is longer than any QR code can hold")
    try:
        return b45decode(body)
    except ValueError as exc:
        raise MalformedError(Stage.BASE45, str(exc)) from None


def _inflate(compressed: bytes) -> bytes:
    try:
        inflater = zlib.decompressobj()  # zlib format only: raw deflate, gzip and plain COSE fail
        cose = inflater.decompress(compressed, MAX_DECOMPRESSED + 1)  # one byte more shows "too large"
        if len(cose) > MAX_DECOMPRESSED:
            raise MalformedError(Stage.ZLIB, f"decompresses to more than {MAX_DECOMPRESSED} bytes")
        if not inflater.eof:
            raise MalformedError(Stage.ZLIB, "the zlib stream is truncated")
        if inflater.unused_data:
            raise MalformedError(Stage.ZLIB, "bytes after the end of the zlib stream")
        return cose
    except MalformedError:
        raise
    except Exception:  # zlib.error, MemoryError, …
        raise MalformedError(Stage.ZLIB, "not a valid zlib stream (broken or not compressed)") from None


def _header_value(protected: Mapping, unprotected: Mapping, label: int):
    if label in protected:
        return protected[label]
    return unprotected.get(label)


def _cose(message: bytes) -> tuple[bytes, bytes, bytes, bytes, int]:
    """(protected bytes, payload, signature, kid, alg) of a COSE_Sign1 message."""
    try:
        item = _cbor_loads(message)
    except Exception:
        raise MalformedError(Stage.COSE, "the decompressed data is not a CBOR item") from None
    if isinstance(item, cbor2.CBORTag) and item.tag == CWT_TAG:
        item = item.value
        if not isinstance(item, cbor2.CBORTag):  # RFC 8392 §6: the CWT tag precedes a tagged COSE message
            raise MalformedError(Stage.COSE, "a CWT tag (61) must hold a tagged COSE_Sign1 message (tag 18)")
    if isinstance(item, cbor2.CBORTag):
        if item.tag == COSE_SIGN_TAG:
            raise MalformedError(Stage.COSE, "COSE_Sign (several signers) is not supported, only COSE_Sign1")
        if item.tag != COSE_SIGN1_TAG:
            raise MalformedError(Stage.COSE, f"CBOR tag {item.tag} is not COSE_Sign1 (tag 18)")
        parts = item.value
    else:
        parts = item  # untagged COSE_Sign1: the HCERT specification (§3.3.1) allows it
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise MalformedError(Stage.COSE, "COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected, payload, signature = parts
    if not isinstance(protected_bytes, bytes):
        raise MalformedError(Stage.COSE, "the protected header is not a byte string")
    if not isinstance(unprotected, Mapping):  # a tag's content decodes immutable (cbor2.frozendict)
        raise MalformedError(Stage.COSE, "the unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise MalformedError(Stage.COSE, "the payload is not a byte string (detached payloads are not supported)")
    if not isinstance(signature, bytes):
        raise MalformedError(Stage.COSE, "the signature is not a byte string")
    if protected_bytes:
        try:
            protected = _cbor_loads(protected_bytes)
        except Exception:
            raise MalformedError(Stage.COSE, "the protected header is not valid CBOR") from None
        if not isinstance(protected, dict):
            raise MalformedError(Stage.COSE, "the protected header is not a map")
    else:
        protected = {}  # a zero-length protected header means "empty" (RFC 9052 §3)

    kid = _header_value(protected, unprotected, HEADER_KID)
    if kid is None:
        raise MalformedError(Stage.COSE, "no key identifier (kid) in the COSE headers")
    if not isinstance(kid, bytes) or len(kid) != keys.KID_LENGTH:
        raise MalformedError(Stage.COSE, f"the key identifier (kid) is not {keys.KID_LENGTH} bytes")
    alg = _header_value(protected, unprotected, HEADER_ALG)
    if alg is None:
        raise MalformedError(Stage.COSE, "no signature algorithm (alg) in the COSE headers")
    if type(alg) is not int or alg not in COSE_ALGORITHMS:
        raise MalformedError(
            Stage.COSE, "unsupported signature algorithm: ES256 (-7), ES384 (-35), ES512 (-36) or PS256 (-37) only"
        )
    return protected_bytes, payload, signature, kid, alg


def _time_claim(claims: dict, key: int, name: str, *, round_up: bool) -> int:
    """A NumericDate claim in whole seconds. RFC 8392 allows non-integer values, and issuers write
    floats: `iat` is rounded up and `exp` down, so the validity window never reaches past what the
    issuer wrote. Booleans, text, tags, NaN and infinities are not NumericDates."""
    value = claims.get(key)
    if value is None:
        raise MalformedError(Stage.CBOR, f"the CWT has no {name} claim")
    if type(value) is float:
        if not math.isfinite(value) or not 0 <= value <= MAX_TIMESTAMP:
            raise MalformedError(Stage.CBOR, f"the CWT {name} claim is out of range")
        value = math.ceil(value) if round_up else math.floor(value)
    if type(value) is not int:
        raise MalformedError(Stage.CBOR, f"the CWT {name} claim is not a number of seconds")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise MalformedError(Stage.CBOR, f"the CWT {name} claim is out of range")
    return value


def _cwt(payload: bytes) -> tuple[dict, str | None, int, int, dict]:
    """(claims, iss, iat, exp, dcc) of a CWT."""
    try:
        claims = _cbor_loads(payload)
    except Exception:
        raise MalformedError(Stage.CBOR, "the COSE payload is not valid CBOR") from None
    if not isinstance(claims, dict):
        raise MalformedError(Stage.CBOR, "the COSE payload is not a CWT claims map")
    issuer = claims.get(CLAIM_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise MalformedError(Stage.CBOR, "the CWT iss claim is not text")
    issued_at = _time_claim(claims, CLAIM_IAT, "iat", round_up=True)
    expires_at = _time_claim(claims, CLAIM_EXP, "exp", round_up=False)
    hcert = claims.get(CLAIM_HCERT)
    if not isinstance(hcert, dict):
        raise MalformedError(Stage.CBOR, "the CWT has no hcert claim (-260) map")
    dcc = hcert.get(HCERT_DCC_V1)
    if not isinstance(dcc, dict):
        raise MalformedError(Stage.CBOR, "the hcert claim holds no DCC map under key 1")
    if not _json_compatible(dcc):
        raise MalformedError(Stage.CBOR, "the DCC holds CBOR values that are not JSON data")
    return claims, issuer, issued_at, expires_at, dcc


def _entry_type(dcc: dict) -> str:
    present = [key for key in ENTRY_KEYS if key in dcc]
    if len(present) != 1:
        raise MalformedError(Stage.SCHEMA, "the DCC must hold exactly one of t, v or r")
    entries = dcc[present[0]]
    if not isinstance(entries, list) or len(entries) != 1:
        raise MalformedError(Stage.SCHEMA, "the DCC must hold exactly one entry")
    return ENTRY_KEYS[present[0]]


def decode(qr: str, *, check_schema: bool = True) -> DecodedHcert:
    """Decode HCERT text; MalformedError (never another exception) if any step fails.

    The signature is not checked here: see `verify_signature`. `check_schema=False` skips only the
    JSON-schema validation (the one-entry rule still applies).
    """
    stage = Stage.PREFIX
    try:
        body = _unprefix(qr)
        stage = Stage.BASE45
        compressed = _base45(body)
        stage = Stage.ZLIB
        cose = _inflate(compressed)
        stage = Stage.COSE
        protected, payload, signature, kid, alg = _cose(cose)
        stage = Stage.CBOR
        claims, issuer, issued_at, expires_at, dcc = _cwt(payload)
        stage = Stage.SCHEMA
        entry_type = _entry_type(dcc)
        if check_schema:
            failure = schema_failure(dcc)
            if failure:
                raise MalformedError(Stage.SCHEMA, failure)
    except MalformedError:
        raise
    except Exception:  # whatever else untrusted input provokes: still a MalformedError, at the step reached
        raise MalformedError(stage, "the data could not be decoded at this step") from None
    return DecodedHcert(
        kid=kid,
        alg=alg,
        protected=protected,
        payload=payload,
        signature=signature,
        claims=claims,
        issuer=issuer,
        issued_at=issued_at,
        expires_at=expires_at,
        dcc=dcc,
        entry_type=entry_type,
    )


# --- verification ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _certificate(certificate_der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate_der)


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
_SHA256 = hashes.SHA256()


def verify_signature(decoded: DecodedHcert, certificate_der: bytes, public_key=None) -> bool:
    """Whether `decoded` is signed by the key of `certificate_der` (DER X.509).

    Pass the certificate's `public_key` when it is at hand (saves parsing; the certificate is cached
    otherwise). False — never an exception — for a bad or malformed signature, a kid that is not the
    certificate's (first 8 bytes of SHA-256 over the DER), an alg that does not match the key
    (ES256/ES384/ES512 need EC P-256/P-384/P-521, PS256 RSA ≥ 2048 bits), a key of another type, or an
    unreadable certificate. ECDSA signatures are raw r‖s (64, 96 or 132 bytes); PS256 is RSASSA-PSS,
    SHA-256, MGF1-SHA-256, salt 32.
    """
    try:
        if decoded.kid is not None and keys.kid_of(certificate_der) != decoded.kid:
            return False
        if public_key is None:
            public_key = _certificate(certificate_der).public_key()
        return cose_signature_valid(public_key, decoded.alg, decoded.signature, decoded.sig_structure)
    except Exception:  # ValueError from odd certificates, …
        return False


def cose_signature_valid(public_key, alg: int | None, signature: bytes, signed: bytes) -> bool:
    """Whether `signature` over `signed` (a COSE Sig_structure) verifies with `public_key` under the COSE
    `alg`, which must match the key (see verify_signature); False, never an exception, otherwise. Also
    the check of the checkpoint bundle's signature (services.registry.checkpoint_bundle)."""
    try:
        algorithm = keys.verification_algorithm(public_key)
        if COSE_ALGORITHMS.get(alg) != algorithm:
            return False
        ecdsa = _ECDSA.get(algorithm)
        if ecdsa is not None:
            scheme, size = ecdsa
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            public_key.verify(der, signed, scheme)
        else:
            if len(signature) != (public_key.key_size + 7) // 8:
                return False
            public_key.verify(signature, signed, _PSS, _SHA256)
        return True
    except Exception:  # InvalidSignature, ValueError from odd keys or certificates, …
        return False


@functools.lru_cache(maxsize=1024)
def _allowed_entry_types(certificate_der: bytes) -> tuple[str, ...] | None:
    try:
        return keys.allowed_entry_types(_certificate(certificate_der))
    except Exception:
        return None


def entry_type_allowed(certificate_der: bytes, entry_type: str) -> bool:
    """Whether the signing certificate may sign DCCs of `entry_type` ("TEST", "VACCINATION",
    "RECOVERY"): its extended key usage lists that type's OID, or no DCC OID at all (= every type).
    False for an unknown entry type or an unreadable certificate."""
    if entry_type not in keys.ENTRY_TYPES:
        return False
    allowed = _allowed_entry_types(bytes(certificate_der))
    if allowed is None:
        return False
    return not allowed or entry_type in allowed


def cwt_valid_at(decoded: DecodedHcert, at_unix: int) -> bool:
    """iat ≤ at ≤ exp (seconds since the epoch); False if either claim is missing."""
    if decoded.issued_at is None or decoded.expires_at is None:
        return False
    return decoded.issued_at <= at_unix <= decoded.expires_at


__all__ = [
    "DecodedHcert",
    "MAX_DECOMPRESSED",
    "MAX_QR_LENGTH",
    "MAX_TIMESTAMP",
    "MalformedError",
    "PREFIX",
    "Stage",
    "b45decode",
    "schema_failure",
    "schema_version_for",
    "cwt_valid_at",
    "decode",
    "entry_type_allowed",
    "verify_signature",
]
