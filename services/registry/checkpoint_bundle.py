"""The checkpoint bundle: one signed document from which an offline checkpoint device decides alone.

A bundle version holds five sets — the trust list, every province rule version, the value sets the rules
use, the hashes of this platform's revoked unexpired certificates, and the bundle keys a device may pin —
with its version, `issued_at` and `valid_until`. It travels as a *full* bundle or as a *delta* from the
previous version (what each set gained and lost), each a COSE_Sign1 message (RFC 9052, tag 18, protected
header {1: alg, 4: kid}) signed by the active bundle key. Both carry `content_sha256`, the SHA-256 of the
content in length-first deterministic CBOR (RFC 8949 §4.2.3) with each set as an array ordered by its
elements' keys, so a device can prove that the deltas it applied left it with exactly the full bundle.
docs/checkpoint-bundle.md has the CDDL; this module is the one implementation: publish_svc builds and
signs with it, verify_svc serves its bytes, the offline verifier opens and applies them.

A revoked certificate is named by the first 16 bytes of SHA-256 over its UVCI (the DCC `ci`, UTF-8), as
the EU DCC revocation lists name theirs (hash type UCI). A keyed hash would add nothing: every device
needs the key, so it would be public, and our UVCIs carry 128 random bits, so the plain hash can be
neither reversed nor guessed; it says nothing about the holder.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.hcert import decode as hdecode
from services.hcert import keys as hkeys
from services.hcert.codec import COSE_SIGN1_TAG, HEADER_ALG, HEADER_KID, Signer
from services.hcert.valuesets import RULE_OUTCOMES, RULE_TEST_TYPES
from services.registry.province_rules import Rule
from services.registry.value_sets import RAT_DEVICES

FORMAT = 1
MAX_BYTES = 64 * 1024 * 1024  # far above a bundle with 1,000,000 revocations (about 18 MB)
REVOCATION_HASH_BYTES = 16
TRUST_LIST, RULES, VALUE_SETS, REVOKED, BUNDLE_KEYS = "trust_list", "rules", "value_sets", "revoked", "bundle_keys"
SETS = (TRUST_LIST, RULES, VALUE_SETS, REVOKED, BUNDLE_KEYS)
FULL, DELTA = "full", "delta"

# An element's key within its set (what a delta's `remove` names): see element_key.
Key = bytes | str | tuple[str, int]
# The content of a version: per set, element key → element (CBOR-ready values).
Content = dict[str, dict[Key, Any]]


class BundleError(Exception):
    """A bundle or delta that must not be used; `reason` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --- the elements of each set -------------------------------------------------------------------------


def revocation_hash(uvci: str) -> bytes:
    """How a bundle names a revoked certificate: SHA-256 of its UVCI, first 16 bytes."""
    return hashlib.sha256(uvci.encode("utf-8")).digest()[:REVOCATION_HASH_BYTES]


def revocation_hashes(uvcis: Iterable[str]) -> list[bytes]:
    """revocation_hash of each (the builder hashes every revoked certificate on every build)."""
    sha256, size = hashlib.sha256, REVOCATION_HASH_BYTES
    return [sha256(uvci.encode("utf-8")).digest()[:size] for uvci in uvcis]


def trust_entry(certificate_der: bytes, country: str, own: bool) -> dict[str, Any]:
    """A document signer certificate on the trust list. `own`: one of this platform's keys, whose
    certificates may be revoked (a device checks them against `revoked`)."""
    cert = x509.load_der_x509_certificate(certificate_der)
    return {
        "certificate": certificate_der,
        "country": country,
        "kid": hkeys.kid_of(certificate_der),
        "algorithm": hkeys.verification_algorithm(cert.public_key()),
        "entry_types": list(hkeys.allowed_entry_types(cert)),  # empty: every entry type
        "own": own,
    }


def _epoch(at: datetime) -> int:
    """Whole seconds, rounded up: a device never applies a rule version before the server would."""
    return math.ceil(at.timestamp())


def rule_entry(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "version": rule.version,
        "province": rule.province_code,
        "entry_type": rule.entry_type,
        "test_type": rule.test_type,
        "disabled": rule.disabled,
        "validity_seconds": rule.validity_seconds,
        "accepted_outcomes": list(rule.accepted_outcomes),
        "require_complete_series": rule.require_complete_series,
        "min_days_since_last_dose": rule.min_days_since_last_dose,
        "max_days_since_last_dose": rule.max_days_since_last_dose,
        "min_days_since_positive": rule.min_days_since_positive,
        "max_days_since_positive": rule.max_days_since_positive,
        "effective_from": _epoch(rule.effective_from),
        "description": rule.description,
    }


def rule_of(entry: Mapping[str, Any]) -> Rule:
    """The Rule a bundle's rule entry describes (for the Verifier)."""
    effective_from = datetime.fromtimestamp(entry["effective_from"], UTC)
    return Rule(
        rule_id=entry["id"],
        version=entry["version"],
        province_code=entry["province"],
        entry_type=entry["entry_type"],
        test_type=entry["test_type"],
        disabled=entry["disabled"],
        validity_seconds=entry["validity_seconds"],
        accepted_outcomes=tuple(entry["accepted_outcomes"]),
        require_complete_series=entry["require_complete_series"],
        min_days_since_last_dose=entry["min_days_since_last_dose"],
        max_days_since_last_dose=entry["max_days_since_last_dose"],
        min_days_since_positive=entry["min_days_since_positive"],
        max_days_since_positive=entry["max_days_since_positive"],
        effective_from=effective_from,
        description=entry["description"],
        created_at=effective_from,
    )


def value_set_entries(rat_devices: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The value sets the verdict uses: DCC test type and test result codes → rule terms, and (when given)
    the active rapid antigen devices, code → display name: a rapid test of another device is RULE_NOT_MET."""
    entries = [
        {"name": "covid-19-lab-test-type", "codes": dict(RULE_TEST_TYPES)},
        {"name": "covid-19-lab-result", "codes": dict(RULE_OUTCOMES)},
    ]
    if rat_devices is not None:
        entries.append({"name": RAT_DEVICES, "codes": dict(rat_devices)})
    return entries


def rat_devices_of(bundle: Bundle) -> dict[str, str] | None:
    """The active rapid antigen devices a bundle lists (code → display), or None when it lists none."""
    entry = bundle.content[VALUE_SETS].get(RAT_DEVICES)
    return dict(entry["codes"]) if entry is not None else None


def bundle_key_entry(certificate_der: bytes, state: str) -> dict[str, Any]:
    """A bundle key a device may pin: the active one signs now; a PENDING one will sign next."""
    return {"certificate": certificate_der, "state": state}


def element_key(set_name: str, element: Any) -> Key:
    if set_name in (TRUST_LIST, BUNDLE_KEYS):
        return hashlib.sha256(element["certificate"]).digest()
    if set_name == RULES:
        return (element["id"], element["version"])
    if set_name == VALUE_SETS:
        return element["name"]
    return bytes(element)  # revoked: the hash is its own key


def content_of(
    trust: Iterable[dict], rules: Iterable[dict], value_sets: Iterable[dict], revoked: Iterable[bytes], bundle_keys
) -> Content:
    sets = {TRUST_LIST: trust, RULES: rules, VALUE_SETS: value_sets, BUNDLE_KEYS: bundle_keys}
    content: Content = {name: {element_key(name, e): e for e in elements} for name, elements in sets.items()}
    content[REVOKED] = {bytes(h): bytes(h) for h in revoked}  # a revocation is its own key
    return content


# --- canonical form and digest ----------------------------------------------------------------------------


def _cbor_key(key: Key) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _order(key: Key) -> Any:
    """Sorts keys as their deterministic CBOR encodings sort, bytewise. A byte or text string's encoding
    is a head that grows with its length, then its bytes: (length, bytes) orders the same, without
    encoding each of 100,000 revocations."""
    if isinstance(key, bytes):
        return (0, len(key), key)
    if isinstance(key, str):
        raw = key.encode("utf-8")
        return (1, len(raw), raw)
    return (2, 0, cbor2.dumps(_cbor_key(key), canonical=True))


def _sorted_keys(elements: Mapping[Key, Any]) -> list[Key]:
    if all(type(k) is bytes for k in elements) and len(set(map(len, elements))) <= 1:
        return sorted(elements)  # byte strings of one length (the revocations): plain byte order, in C
    return sorted(elements, key=_order)


def _ordered(content: Content) -> dict[str, list]:
    """Each set as an array ordered by the deterministic CBOR encoding of its elements' keys (the keys
    of one set are all of one kind)."""
    return {name: [content[name][k] for k in _sorted_keys(content[name])] for name in SETS}


def content_digest(content: Content) -> bytes:
    return hashlib.sha256(cbor2.dumps(_ordered(content), canonical=True)).digest()


# --- building (publish_svc) ---------------------------------------------------------------------------------


def _header(kind: str, version: int, issued_at: datetime, valid_until: datetime, digest: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        "issued_at": int(issued_at.timestamp()),
        "valid_until": int(valid_until.timestamp()),
        "content_sha256": digest,
    }


def full_payload(version: int, issued_at: datetime, valid_until: datetime, content: Content) -> bytes:
    payload = _header(FULL, version, issued_at, valid_until, content_digest(content))
    payload.update(_ordered(content))
    return cbor2.dumps(payload, canonical=True)


def changes(old: Content, new: Content) -> dict[str, dict[str, list]]:
    """Per set: the elements to add and the keys to remove to turn `old` into `new` (a changed element
    is removed and added again). Both lists ordered like the content."""
    out: dict[str, dict[str, list]] = {}
    for name in SETS:
        before, after = old.get(name, {}), new[name]
        removed = {k: None for k in before if k not in after or after[k] != before[k]}
        added = {k: e for k, e in after.items() if k not in before or before[k] != e}
        out[name] = {
            "add": [added[k] for k in _sorted_keys(added)],
            "remove": [_cbor_key(k) for k in _sorted_keys(removed)],
        }
    return out


def delta_payload(version: int, issued_at: datetime, valid_until: datetime, old: Content, new: Content) -> bytes:
    payload = _header(DELTA, version, issued_at, valid_until, content_digest(new))
    payload["from_version"] = version - 1
    payload.update(changes(old, new))
    return cbor2.dumps(payload, canonical=True)


def sign(signer: Signer, payload: bytes) -> bytes:
    """The COSE_Sign1 message (tag 18; protected {alg, kid}) carrying `payload`."""
    return signer.sign(payload)


# --- reading (devices, the offline verifier, the builder's previous version) -------------------------------


@dataclass(frozen=True)
class Bundle:
    """A full bundle, verified and parsed, or the state a device holds after applying deltas."""

    version: int
    issued_at: datetime
    valid_until: datetime
    content: Content
    content_sha256: bytes


@dataclass(frozen=True)
class Delta:
    version: int
    from_version: int
    issued_at: datetime
    valid_until: datetime
    changes: dict[str, dict[str, list]]
    content_sha256: bytes


def _cose_parts(message: bytes) -> tuple[bytes, int, bytes, bytes, bytes]:
    """(protected bytes, alg, kid, payload, signature) of a tagged COSE_Sign1 message, strictly."""
    if not isinstance(message, bytes | bytearray) or len(message) > MAX_BYTES:
        raise BundleError("BUNDLE_MALFORMED", f"not a bundle of at most {MAX_BYTES} bytes")
    try:
        item = cbor2.loads(bytes(message))
    except Exception:  # noqa: BLE001 - whatever a broken or hostile file makes the decoder raise
        raise BundleError("BUNDLE_MALFORMED", "not a CBOR item") from None
    if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
        raise BundleError("BUNDLE_MALFORMED", "not a tagged COSE_Sign1 message (CBOR tag 18)")
    parts = item.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise BundleError("BUNDLE_MALFORMED", "COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected, payload, signature = parts
    if not (isinstance(protected_bytes, bytes) and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise BundleError("BUNDLE_MALFORMED", "the protected header, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping):  # not signed, and never read: but a header map all the same
        raise BundleError("BUNDLE_MALFORMED", "the unprotected header is not a map")
    try:
        protected = cbor2.loads(protected_bytes)
    except Exception:  # noqa: BLE001 - as above
        raise BundleError("BUNDLE_MALFORMED", "the protected header is not CBOR") from None
    if not isinstance(protected, Mapping):
        raise BundleError("BUNDLE_MALFORMED", "the protected header is not a map")
    alg, kid = protected.get(HEADER_ALG), protected.get(HEADER_KID)
    if type(alg) is not int or not isinstance(kid, bytes):
        raise BundleError("BUNDLE_MALFORMED", "the protected header needs alg (1) and kid (4)")
    return protected_bytes, alg, kid, payload, signature


def open_signed(message: bytes, pinned: Sequence[x509.Certificate]) -> dict[str, Any]:
    """The payload of a bundle or delta whose signature a pinned bundle certificate verifies."""
    protected_bytes, alg, kid, payload, signature = _cose_parts(message)
    signers = [c for c in pinned if hkeys.kid_of(c.public_bytes(Encoding.DER)) == kid]
    if not signers:
        raise BundleError("BUNDLE_KEY_UNKNOWN", f"signed by key {kid.hex()}, which is not pinned")
    signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    if not any(hdecode.cose_signature_valid(c.public_key(), alg, signature, signed) for c in signers):
        raise BundleError("BUNDLE_SIGNATURE_INVALID", "the signature does not verify with the pinned key")
    try:
        body = cbor2.loads(payload)
    except Exception:  # noqa: BLE001 - signed by us, so never; said clearly if it happens
        raise BundleError("BUNDLE_MALFORMED", "the payload is not CBOR") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise BundleError("BUNDLE_FORMAT_UNSUPPORTED", f"not a bundle of format {FORMAT}")
    return body


def _time(body: Mapping[str, Any], field: str) -> datetime:
    value = body.get(field)
    if type(value) is not int:
        raise BundleError("BUNDLE_MALFORMED", f"{field} must be an integer")
    return datetime.fromtimestamp(value, UTC)


def _version(body: Mapping[str, Any], field: str) -> int:
    value = body.get(field)
    if type(value) is not int or value < 0:
        raise BundleError("BUNDLE_MALFORMED", f"{field} must be a non-negative integer")
    return value


def parse_bundle(body: Mapping[str, Any], *, check_digest: bool = True) -> Bundle:
    """`check_digest=False` only for a bundle whose signature is not in doubt and whose content was
    hashed when it was made (the builder reading its previous version back)."""
    if body.get("kind") != FULL:
        raise BundleError("BUNDLE_KIND_UNEXPECTED", "expected a full bundle")
    try:
        content = {name: {element_key(name, e): e for e in body[name]} for name in SETS}
    except (KeyError, TypeError) as exc:
        raise BundleError("BUNDLE_MALFORMED", f"a set is missing or malformed: {exc}") from None
    digest = body.get("content_sha256")
    if not isinstance(digest, bytes) or (check_digest and digest != content_digest(content)):
        raise BundleError("BUNDLE_DIGEST_MISMATCH", "the content does not match content_sha256")
    return Bundle(_version(body, "version"), _time(body, "issued_at"), _time(body, "valid_until"), content, digest)


def parse_delta(body: Mapping[str, Any]) -> Delta:
    if body.get("kind") != DELTA:
        raise BundleError("BUNDLE_KIND_UNEXPECTED", "expected a delta")
    sets = {}
    for name in SETS:
        change = body.get(name)
        if not isinstance(change, Mapping) or not isinstance(change.get("add"), list):
            raise BundleError("BUNDLE_MALFORMED", f"{name} must be a map with add and remove lists")
        if not isinstance(change.get("remove"), list):
            raise BundleError("BUNDLE_MALFORMED", f"{name} must be a map with add and remove lists")
        sets[name] = {"add": change["add"], "remove": change["remove"]}
    digest = body.get("content_sha256")
    if not isinstance(digest, bytes):
        raise BundleError("BUNDLE_MALFORMED", "content_sha256 must be a byte string")
    return Delta(
        _version(body, "version"),
        _version(body, "from_version"),
        _time(body, "issued_at"),
        _time(body, "valid_until"),
        sets,
        digest,
    )


def read_bundle(message: bytes, pinned: Sequence[x509.Certificate]) -> Bundle:
    return parse_bundle(open_signed(message, pinned))


def read_delta(message: bytes, pinned: Sequence[x509.Certificate]) -> Delta:
    return parse_delta(open_signed(message, pinned))


def _as_key(set_name: str, raw: Any) -> Key:
    if set_name == RULES:
        if not isinstance(raw, list) or len(raw) != 2:
            raise BundleError("BUNDLE_MALFORMED", "a rule is removed by [id, version]")
        return (raw[0], raw[1])
    return raw


def apply(held: Bundle, delta: Delta) -> Bundle:
    """`held` moved to the delta's version; refused unless the delta starts where `held` is and the
    result is exactly the content the delta names (content_sha256)."""
    if delta.from_version != held.version:
        raise BundleError(
            "BUNDLE_DELTA_OUT_OF_ORDER",
            f"the delta starts at version {delta.from_version}, the device holds {held.version}",
        )
    content: Content = {}
    try:
        for name in SETS:
            elements = dict(held.content[name])
            for raw in delta.changes[name]["remove"]:
                elements.pop(_as_key(name, raw), None)
            for element in delta.changes[name]["add"]:
                elements[element_key(name, element)] = element
            content[name] = elements
    except (KeyError, TypeError) as exc:
        raise BundleError("BUNDLE_MALFORMED", f"a delta element is malformed: {exc}") from None
    if content_digest(content) != delta.content_sha256:
        raise BundleError("BUNDLE_DIGEST_MISMATCH", "the content after the delta does not match content_sha256")
    return Bundle(delta.version, delta.issued_at, delta.valid_until, content, delta.content_sha256)


def payload_bytes(message: bytes) -> bytes:
    """The payload of a COSE_Sign1 message, signature unchecked."""
    return _cose_parts(message)[3]


def payload_of(message: bytes) -> dict[str, Any]:
    """The payload of a bundle this platform signed and stored, without checking the signature (the
    builder reading its own previous version back from Postgres)."""
    return cbor2.loads(payload_bytes(message))
