"""verify_signature refuses a certificate whose kid is not the message's kid, even for a genuine signature."""

import zlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.hcert import codec
from services.hcert import decode as hdecode
from services.hcert import keys as hkeys
from tests.dcc_samples import negative_naat_dcc

ISSUED_AT = 1_700_000_000
EXPIRES_AT = ISSUED_AT + 72 * 3600
DCC = negative_naat_dcc(datetime(2023, 11, 14, 20, tzinfo=UTC), "URN:UVCI:01:VN:KIDCHECK#1")


@pytest.mark.parametrize("algorithm", ["ES256", "PS256"])
def test_a_second_certificate_of_the_same_key_has_another_kid_and_is_refused(algorithm):
    material = hkeys.SigningKeyMaterial.generate(algorithm)
    qr = codec.encode_hcert(DCC, signer=codec.Signer(material), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    decoded = hdecode.decode(qr)
    assert decoded.kid == material.kid
    assert hdecode.verify_signature(decoded, material.certificate_der)  # genuine

    # Another certificate for the very same key: the signature verifies under its public key, but its kid
    # (a hash of its DER) is not the one the message names.
    other = hkeys.make_certificate(material.key, algorithm, timedelta(days=30), common_name="Same key, other DSC")
    other_der = hkeys.SigningKeyMaterial(key=material.key, certificate=other, algorithm=algorithm).certificate_der
    assert hkeys.kid_of(other_der) != decoded.kid
    assert not hdecode.verify_signature(decoded, other_der)
    assert not hdecode.verify_signature(decoded, other_der, other.public_key())


def _es256_qr_naming_kid(material: hkeys.SigningKeyMaterial, kid: bytes) -> str:
    """A QR signed (genuinely) by `material`'s key whose protected header names `kid`."""
    protected = cbor2.dumps({codec.HEADER_ALG: codec.COSE_ALGORITHMS["ES256"], codec.HEADER_KID: kid})
    payload = codec.encode_cwt(DCC, issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(material.key.sign(signed, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    cose = cbor2.dumps(cbor2.CBORTag(codec.COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    return codec.PREFIX + codec.b45encode(zlib.compress(cose, 9))


def test_a_message_naming_another_certificates_kid_is_refused_by_the_real_signer():
    signer, named = hkeys.SigningKeyMaterial.generate("ES256"), hkeys.SigningKeyMaterial.generate("ES256")

    honest = hdecode.decode(_es256_qr_naming_kid(signer, signer.kid))
    assert hdecode.verify_signature(honest, signer.certificate_der)  # the construction signs genuinely

    decoded = hdecode.decode(_es256_qr_naming_kid(signer, named.kid))
    assert decoded.kid == named.kid
    assert not hdecode.verify_signature(decoded, signer.certificate_der)
    assert not hdecode.verify_signature(decoded, signer.certificate_der, signer.certificate.public_key())
    assert not hdecode.verify_signature(decoded, named.certificate_der)  # and the named key did not sign it
