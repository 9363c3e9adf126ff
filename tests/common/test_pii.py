"""Personal data at rest: AES-GCM with key ids, keyed-hash lookups."""

import os

import pytest

from services.common.pii import PiiCipher, PiiError


def cipher(*key_ids: str, pepper: bytes = b"p" * 32, keys: dict | None = None) -> PiiCipher:
    return PiiCipher(keys or {k: os.urandom(32) for k in key_ids}, pepper)


def test_round_trip_and_ciphertext_hides_plaintext():
    c = cipher("k1")
    sealed = c.seal("person.full_name", "Nguyễn Văn An")
    assert "Nguyễn".encode() not in sealed
    assert c.open("person.full_name", sealed) == "Nguyễn Văn An"
    assert c.seal("person.full_name", "Nguyễn Văn An") != sealed  # fresh nonce each time


def test_old_key_still_opens_after_rotation():
    old_key, new_key = os.urandom(32), os.urandom(32)
    before = PiiCipher({"2021a": old_key}, b"p" * 32)
    sealed = before.seal("person.phone", "0912345678")
    after = PiiCipher({"2021b": new_key, "2021a": old_key}, b"p" * 32)
    assert PiiCipher.key_id_of(sealed) == "2021a"
    assert after.open("person.phone", sealed) == "0912345678"
    assert PiiCipher.key_id_of(after.seal("person.phone", "0912345678")) == "2021b"


def test_ciphertext_moved_to_another_column_fails():
    c = cipher("k1")
    sealed = c.seal("person.full_name", "Trần Thị B")
    with pytest.raises(PiiError):
        c.open("person.phone", sealed)


def test_tampered_or_unknown_key_fails():
    c = cipher("k1")
    sealed = bytearray(c.seal("x", "value"))
    sealed[-1] ^= 1
    with pytest.raises(PiiError):
        c.open("x", bytes(sealed))
    with pytest.raises(PiiError):
        cipher("other").open("x", c.seal("x", "value"))


def test_keyed_hash_is_normalised_pepper_and_purpose_bound():
    c = cipher("k1", pepper=b"a" * 32)
    assert c.keyed_hash("id", " 001234567890 ") == c.keyed_hash("id", "001234567890")
    assert c.keyed_hash("passport", "b1234567") == c.keyed_hash("passport", "B1234567")
    assert c.keyed_hash("id", "001234567890") != c.keyed_hash("phone", "001234567890")
    assert c.keyed_hash("id", "001234567890") != cipher("k1", pepper=b"b" * 32).keyed_hash("id", "001234567890")
