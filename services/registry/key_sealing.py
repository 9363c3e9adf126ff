"""The private halves of HCERT signing keys, sealed with their own key-encryption key (KEK).

Not with the personal-data keyring: a service holding personal-data keys must not thereby hold the power
to forge certificates. And asymmetric on purpose: whoever creates signing keys (AdminService in
result_svc, the operator CLI) holds only the KEK's public half (`SIGNING_KEYS_KEK_PUBLIC`) and can seal
but never open; publish_svc, which signs, alone holds the private half (`SIGNING_KEYS_KEK`).

ECIES over X25519: an ephemeral X25519 key agrees a secret with the KEK, HKDF-SHA256 derives an AES-256
key from it, AES-GCM seals the PEM. A sealed value is

    b"kek1" | KEK id (8 bytes: SHA-256 of the KEK's raw public key) | ephemeral public key (32) |
    nonce (12) | ciphertext and tag

with the header (everything before the ciphertext) and the purpose as associated data. The KEK id lets
publish_svc hold the new and the old KEK during a rotation (`SIGNING_KEYS_KEK="new,old"`).

A KEK is 32 random bytes in base64 (`python -m services.admin signing-key new-kek` prints one with its
public half).
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"kek1"
_PURPOSE = b"signing_key.private"
_RAW = serialization.Encoding.Raw
_HEADER = len(MAGIC) + 8 + 32 + 12


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, serialization.PublicFormat.Raw)


def kek_id(public: X25519PublicKey) -> bytes:
    return hashlib.sha256(_raw_public(public)).digest()[:8]


def _aes_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"covidtest signing key v1" + ephemeral + recipient).derive(shared)


def is_kek_sealed(value: bytes) -> bool:
    """Whether `value` was sealed here (rows from before the KEK were sealed with the personal-data keyring)."""
    return bytes(value[: len(MAGIC)]) == MAGIC


class SigningKeySealer:
    """Seals private keys for the database with the public half of the current KEK."""

    def __init__(self, public: X25519PublicKey):
        self._public = public
        self.kek_id = kek_id(public)

    def seal(self, pem: bytes) -> bytes:
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw, recipient = _raw_public(ephemeral.public_key()), _raw_public(self._public)
        key = _aes_key(ephemeral.exchange(self._public), ephemeral_raw, recipient)
        nonce = os.urandom(12)
        header = MAGIC + self.kek_id + ephemeral_raw + nonce
        return header + AESGCM(key).encrypt(nonce, pem, header + _PURPOSE)


class SigningKeyOpener:
    """Opens sealed private keys with the KEKs it holds (the current one first)."""

    def __init__(self, keks: list[X25519PrivateKey]):
        self._by_id = {kek_id(k.public_key()): k for k in keks}

    def open(self, sealed: bytes) -> bytes:
        """The PEM; ValueError when it is not a KEK-sealed value, its KEK is not held, or it was altered."""
        sealed = bytes(sealed)
        if not is_kek_sealed(sealed) or len(sealed) <= _HEADER:
            raise ValueError("not a private key sealed with a signing-key KEK")
        header = sealed[:_HEADER]
        kek = self._by_id.get(header[4:12])
        if kek is None:
            raise ValueError(f"sealed with KEK {header[4:12].hex()}, which SIGNING_KEYS_KEK does not hold")
        ephemeral_raw, nonce = header[12:44], header[44:56]
        key = _aes_key(
            kek.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw)), ephemeral_raw, _raw_public(kek.public_key())
        )
        try:
            return AESGCM(key).decrypt(nonce, sealed[_HEADER:], header + _PURPOSE)
        except InvalidTag:
            raise ValueError("the sealed private key does not open: altered, or another KEK") from None


def _key_bytes(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes (base64 of a raw X25519 key), got {len(raw)}")
    return raw


def parse_kek_private(raw: str) -> list[X25519PrivateKey]:
    """`SIGNING_KEYS_KEK`: comma-separated base64 X25519 private keys, the current one first."""
    parts = [p for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValueError("at least one KEK is required")
    return [X25519PrivateKey.from_private_bytes(_key_bytes(p, "a KEK")) for p in parts]


def parse_kek_public(raw: str) -> X25519PublicKey:
    """`SIGNING_KEYS_KEK_PUBLIC`: the base64 raw public half of the current KEK."""
    return X25519PublicKey.from_public_bytes(_key_bytes(raw, "the KEK's public key"))


def new_kek() -> tuple[str, str]:
    """(private, public) of a fresh KEK, in the settings' base64 form."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw_private).decode(), base64.b64encode(_raw_public(private.public_key())).decode()
