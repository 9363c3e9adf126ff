"""Personal data at rest: application-level AES-GCM encryption and keyed-hash lookups.

Ciphertext layout (bytea): version byte 0x01, key-id length (1 byte), key id (ASCII), 12-byte nonce,
AES-256-GCM ciphertext+tag. The key id travels with the data so keys can rotate: new data is sealed
with the first key of the ring, old data opens with whichever key it names. The column's purpose
(e.g. "person.full_name") is the associated data, so a ciphertext copied into another column fails to
open.

Lookups never use plain values: `keyed_hash` is HMAC-SHA-256 with a secret pepper over a normalised
value, so equal inputs match while the database alone reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1
_NONCE_LEN = 12


class PiiError(Exception):
    """A ciphertext that cannot be opened (unknown key id, tampering, wrong column)."""


class PiiCipher:
    def __init__(self, keys: dict[str, bytes], pepper: bytes):
        if not keys:
            raise ValueError("at least one personal-data key is required")
        self._active_id = next(iter(keys))
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._pepper = pepper

    @property
    def active_key_id(self) -> str:
        return self._active_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the ring's keys, the active one first (rotation checks it can open what it finds)."""
        return tuple(self._aead)

    def seal(self, purpose: str, plaintext: str) -> bytes:
        return self.seal_bytes(purpose, plaintext.encode("utf-8"))

    def open(self, purpose: str, blob: bytes) -> str:
        return self.open_bytes(purpose, blob).decode("utf-8")

    def seal_bytes(self, purpose: str, plaintext: bytes) -> bytes:
        key_id = self._active_id.encode("ascii")
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aead[self._active_id].encrypt(nonce, plaintext, purpose.encode("ascii"))
        return bytes([_VERSION, len(key_id)]) + key_id + nonce + sealed

    def open_bytes(self, purpose: str, blob: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < 2 or blob[0] != _VERSION:
            raise PiiError("unknown ciphertext format")
        id_len = blob[1]
        key_id = blob[2 : 2 + id_len].decode("ascii", "replace")
        aead = self._aead.get(key_id)
        if aead is None:
            raise PiiError(f"no key with id {key_id!r} in the keyring")
        nonce = blob[2 + id_len : 2 + id_len + _NONCE_LEN]
        try:
            return aead.decrypt(nonce, blob[2 + id_len + _NONCE_LEN :], purpose.encode("ascii"))
        except InvalidTag as exc:
            raise PiiError("ciphertext failed authentication") from exc

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """The key id a ciphertext was sealed with (for re-encryption after a rotation)."""
        blob = bytes(blob)
        return blob[2 : 2 + blob[1]].decode("ascii", "replace")

    def keyed_hash(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA-256 of a normalised value; `purpose` separates domains (national id vs phone)."""
        normalised = unicodedata.normalize("NFC", value).strip().upper()
        return hmac.new(self._pepper, f"{purpose}\x00{normalised}".encode(), hashlib.sha256).digest()
