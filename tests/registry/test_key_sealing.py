"""Signing keys sealed with their own KEK: the public half seals, only the private half opens, a KEK rotation
keeps old keys opening, and a key sealed before the KEK (with the personal-data keyring) still loads."""

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from services.common.config import ConfigError, load
from services.common.db import connect
from services.common.pii import PiiCipher, PiiError
from services.hcert import keys as hkeys
from services.publish_svc.config import PublishConfig
from services.registry import signing_keys
from services.registry.key_sealing import (
    SigningKeyOpener,
    SigningKeySealer,
    is_kek_sealed,
    new_kek,
    parse_kek_private,
    parse_kek_public,
)
from services.registry.repository import signing_keys as repo
from services.result_svc.config import ResultConfig
from tests.conftest import service_env

PEM = b"-----BEGIN PRIVATE KEY-----\nnot a real key, only bytes to seal\n-----END PRIVATE KEY-----\n"


def kek_pair() -> tuple[SigningKeyOpener, SigningKeySealer, str]:
    private, public = new_kek()
    return SigningKeyOpener(parse_kek_private(private)), SigningKeySealer(parse_kek_public(public)), private


def test_the_public_half_seals_and_only_the_private_half_opens():
    opener, sealer, _ = kek_pair()
    sealed = sealer.seal(PEM)
    assert is_kek_sealed(sealed) and PEM not in sealed
    assert sealer.seal(PEM) != sealed  # a fresh ephemeral key and nonce each time
    assert opener.open(sealed) == PEM
    other, _, _ = kek_pair()
    with pytest.raises(ValueError, match="does not hold"):
        other.open(sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(ValueError, match="does not open"):
        opener.open(bytes(tampered))
    with pytest.raises(ValueError, match="not a private key sealed"):
        opener.open(b"v1" + os.urandom(64))  # what the personal-data keyring writes


def test_a_kek_rotation_keeps_keys_sealed_under_the_old_kek_opening():
    _, old_sealer, old_private = kek_pair()
    _, new_sealer, new_private = kek_pair()
    both = SigningKeyOpener(parse_kek_private(f"{new_private},{old_private}"))
    assert both.open(old_sealer.seal(PEM)) == PEM and both.open(new_sealer.seal(PEM)) == PEM


def test_malformed_keks_are_refused():
    for bad in ("", "not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_kek_private(bad)
    with pytest.raises(ValueError):
        parse_kek_public(base64.b64encode(os.urandom(31)).decode())


def test_only_publish_svc_is_configured_with_the_private_kek(database_url):
    env = service_env(database_url)
    result = load(ResultConfig, env)
    assert not hasattr(result, "signing_keys_kek") and hasattr(result, "signing_keys_kek_public")
    without = {k: v for k, v in env.items() if k != "SIGNING_KEYS_KEK"}
    with pytest.raises(ConfigError, match="SIGNING_KEYS_KEK"):
        load(PublishConfig, without)


async def test_generated_keys_are_kek_sealed_and_old_keyring_sealed_keys_still_load(database_url):
    opener, sealer, _ = kek_pair()
    pii = PiiCipher({"k1": os.urandom(32)}, os.urandom(32))
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            generated = await signing_keys.generate(conn, None, sealer, "ES256")
            sealed = await conn.fetchval(
                "SELECT private_key_enc FROM signing_keys WHERE id = $1", uuid.UUID(generated.id)
            )
            assert is_kek_sealed(sealed)
            await signing_keys.activate(conn, None, generated.id)
            active = await signing_keys.load_active(conn, opener)
            assert active is not None and str(active.key_id) == generated.id
            with pytest.raises(PiiError):  # the personal-data keyring cannot open it
                pii.open("signing_key.private", sealed)

            # A key from before the KEK, sealed with the personal-data keyring.
            legacy_key = hkeys.generate_private_key("ES256")
            certificate = hkeys.make_certificate(legacy_key, "ES256", signing_keys.DEFAULT_VALIDITY)
            der = certificate.public_bytes(Encoding.DER)
            legacy_id = uuid.uuid4()
            await repo.insert_key(
                conn,
                key_id=legacy_id,
                kid=hkeys.kid_of(der),
                algorithm="ES256",
                certificate_der=der,
                private_key_enc=pii.seal("signing_key.private", hkeys.private_key_pem(legacy_key).decode("ascii")),
                private_key_ref=None,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                purpose=signing_keys.DCC,
            )
            await signing_keys.activate(conn, None, str(legacy_id))
            with pytest.raises(ValueError, match="personal-data keyring"):
                await signing_keys.load_active(conn, opener)
            active = await signing_keys.load_active(conn, opener, legacy=pii)
            assert active is not None and active.key_id == legacy_id
            raise _Rollback  # leave the module's database as it was
    except _Rollback:
        pass
    finally:
        await conn.close()


class _Rollback(Exception):
    pass
