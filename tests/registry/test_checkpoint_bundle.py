"""The checkpoint bundle format (services.registry.checkpoint_bundle) without servers: deltas applied in
sequence equal the full bundle, and what must be refused is refused with its reason."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.hcert import keys as hkeys
from services.hcert.codec import Signer
from services.registry import checkpoint_bundle as cb
from tests.dcc_samples import naat_rule

BUNDLE_KEY = hkeys.SigningKeyMaterial.generate("ES256")
OTHER_KEY = hkeys.SigningKeyMaterial.generate("ES256")
RSA_BUNDLE_KEY = hkeys.SigningKeyMaterial.generate("PS256")
DSC = [hkeys.SigningKeyMaterial.generate("ES256") for _ in range(3)]
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def pinned(*materials: hkeys.SigningKeyMaterial) -> list[x509.Certificate]:
    return [m.certificate for m in materials]


def _rule(province: int, version: int, hours: int) -> dict:
    return cb.rule_entry(
        naat_rule(f"{province:02d}", T0 - timedelta(days=version), validity_hours=hours, version=version)
    )


# A version's content drawn from small pools, so that consecutive versions share, gain and lose elements.
contents = st.builds(
    lambda trust, rules, revoked, keys: cb.content_of(
        [cb.trust_entry(DSC[i].certificate_der, "VN", own) for i, own in trust],
        [_rule(i, v, h) for i, v, h in rules],
        cb.value_set_entries(),
        [hashlib.sha256(bytes([n])).digest()[:16] for n in revoked],
        [cb.bundle_key_entry(BUNDLE_KEY.certificate_der, state) for state in keys],
    ),
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=3, unique_by=lambda t: t[0]),
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.sampled_from([24, 48, 72])), max_size=6),
    st.sets(st.integers(0, 40), max_size=30),
    st.lists(st.sampled_from(["ACTIVE", "PENDING"]), max_size=1),
)


def full(version: int, content: cb.Content, signer: Signer | None = None, at: datetime = T0) -> bytes:
    payload = cb.full_payload(version, at, at + timedelta(hours=24), content)
    return cb.sign(signer or Signer(BUNDLE_KEY), payload)


def delta(version: int, old: cb.Content, new: cb.Content, at: datetime = T0) -> bytes:
    return cb.sign(Signer(BUNDLE_KEY), cb.delta_payload(version, at, at + timedelta(hours=24), old, new))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(contents, min_size=2, max_size=6))
def test_deltas_applied_in_sequence_equal_the_full_bundle(versions):
    held = cb.read_bundle(full(1, versions[0]), pinned(BUNDLE_KEY))
    for number, (old, new) in enumerate(zip(versions, versions[1:]), start=2):
        held = cb.apply(held, cb.read_delta(delta(number, old, new), pinned(BUNDLE_KEY)))
    expected = cb.read_bundle(full(len(versions), versions[-1]), pinned(BUNDLE_KEY))
    assert held.version == expected.version
    assert held.content == expected.content
    assert held.content_sha256 == expected.content_sha256


def test_an_unchanged_version_is_an_empty_delta_that_moves_valid_until():
    content = cb.content_of([], [], cb.value_set_entries(), [b"\x01" * 16], [])
    held = cb.read_bundle(full(1, content), pinned(BUNDLE_KEY))
    later = T0 + timedelta(hours=1)
    step = cb.read_delta(delta(2, content, content, later), pinned(BUNDLE_KEY))
    assert all(not change["add"] and not change["remove"] for change in step.changes.values())
    moved = cb.apply(held, step)
    assert moved.valid_until == later + timedelta(hours=24) and moved.content == held.content


def test_every_flipped_byte_of_a_bundle_is_refused():
    message = full(1, cb.content_of([], [], cb.value_set_entries(), [b"\x02" * 16], []))
    for position in range(len(message)):
        tampered = bytearray(message)
        tampered[position] ^= 0x40
        with pytest.raises(cb.BundleError):
            cb.read_bundle(bytes(tampered), pinned(BUNDLE_KEY))


def test_a_bundle_signed_by_another_key_is_refused_even_with_a_matching_algorithm():
    message = full(1, cb.content_of([], [], cb.value_set_entries(), [], []), Signer(OTHER_KEY))
    with pytest.raises(cb.BundleError) as refused:
        cb.read_bundle(message, pinned(BUNDLE_KEY))
    assert refused.value.reason == "BUNDLE_KEY_UNKNOWN"
    # The other key's kid spliced into the header still needs that key's signature.
    assert cb.read_bundle(message, pinned(OTHER_KEY)).version == 1


def test_a_ps256_bundle_key_verifies_and_a_wrong_signature_of_the_right_key_is_refused():
    content = cb.content_of([], [], cb.value_set_entries(), [], [])
    message = full(1, content, Signer(RSA_BUNDLE_KEY))
    assert cb.read_bundle(message, pinned(RSA_BUNDLE_KEY)).version == 1
    other_payload = cb.full_payload(2, T0, T0 + timedelta(hours=1), content)
    tag = cbor2.loads(message)
    protected, unprotected, _, signature = tag.value
    spliced = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, other_payload, signature]))
    with pytest.raises(cb.BundleError) as refused:
        cb.read_bundle(spliced, pinned(RSA_BUNDLE_KEY))
    assert refused.value.reason == "BUNDLE_SIGNATURE_INVALID"


def test_a_delta_out_of_order_or_not_leading_to_its_digest_is_refused():
    empty = cb.content_of([], [], cb.value_set_entries(), [], [])
    one = cb.content_of([], [], cb.value_set_entries(), [b"\x03" * 16], [])
    held = cb.read_bundle(full(1, empty), pinned(BUNDLE_KEY))
    with pytest.raises(cb.BundleError) as refused:
        cb.apply(held, cb.read_delta(delta(3, empty, one), pinned(BUNDLE_KEY)))
    assert refused.value.reason == "BUNDLE_DELTA_OUT_OF_ORDER"
    # A correctly signed delta computed against other content than the device holds: {03} → {04} applied
    # to {05} leaves {04, 05}, which is not the content the delta names.
    two = cb.content_of([], [], cb.value_set_entries(), [b"\x04" * 16], [])
    other = cb.content_of([], [], cb.value_set_entries(), [b"\x05" * 16], [])
    held = cb.read_bundle(full(1, other), pinned(BUNDLE_KEY))
    with pytest.raises(cb.BundleError) as refused:
        cb.apply(held, cb.read_delta(delta(2, one, two), pinned(BUNDLE_KEY)))
    assert refused.value.reason == "BUNDLE_DIGEST_MISMATCH"


def test_a_full_bundle_is_not_accepted_as_a_delta_nor_the_reverse():
    content = cb.content_of([], [], cb.value_set_entries(), [], [])
    with pytest.raises(cb.BundleError) as refused:
        cb.read_delta(full(1, content), pinned(BUNDLE_KEY))
    assert refused.value.reason == "BUNDLE_KIND_UNEXPECTED"
    with pytest.raises(cb.BundleError) as refused:
        cb.read_bundle(delta(2, content, content), pinned(BUNDLE_KEY))
    assert refused.value.reason == "BUNDLE_KIND_UNEXPECTED"


@pytest.mark.parametrize(
    "message",
    [b"", b"\xff", cbor2.dumps([1, 2, 3, 4]), cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])), b"\x9f" * 10_000],
)
def test_garbage_is_malformed_never_a_crash(message):
    with pytest.raises(cb.BundleError) as refused:
        cb.read_bundle(message, pinned(BUNDLE_KEY))
    assert refused.value.reason == "BUNDLE_MALFORMED"


def test_the_revocation_hash_is_the_first_16_bytes_of_sha256_of_the_uvci():
    uvci = "URN:UVCI:01:VN:0123456789ABCDEFGHIJKLMNO#X"
    assert cb.revocation_hash(uvci) == hashlib.sha256(uvci.encode()).digest()[:16]
    assert len(cb.revocation_hash(uvci)) == cb.REVOCATION_HASH_BYTES


@given(
    st.one_of(
        st.lists(st.binary(max_size=300), unique=True),
        st.lists(st.text(max_size=40), unique=True),
        st.lists(st.tuples(st.text(max_size=10), st.integers(0, 2**40)), unique=True),
    )
)
def test_each_set_is_ordered_as_the_deterministic_cbor_encodings_of_its_keys(keys):
    """The documented order (docs/checkpoint-bundle.md), which a device recomputing content_sha256 uses."""
    by_encoding = sorted(keys, key=lambda k: cbor2.dumps(list(k) if isinstance(k, tuple) else k, canonical=True))
    assert cb._sorted_keys(dict.fromkeys(keys)) == by_encoding
