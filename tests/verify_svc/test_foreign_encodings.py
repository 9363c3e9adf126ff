"""Verdicts for the encodings other issuers really use (issue 16), in-process: certificates made with
this test's own keys, each encoding on its own, each one VALID under a province rule; and the same
certificate with a broken signature SIGNATURE_INVALID, so the acceptance is not a blind one."""

from __future__ import annotations

import asyncio
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
from services.verify_svc.trust import Snapshot, trusted_key
from services.verify_svc.verifier import Verifier
from tests.dcc_samples import naat_rule, negative_naat_dcc
from tests.hcert.test_signature_algorithms import foreign_certificate
from tests.verify_svc.test_verifier_cache import _NoStatus, _Trust

SAMPLE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
CURVES = {-7: (ec.SECP256R1(), hashes.SHA256(), 32), -35: (ec.SECP384R1(), hashes.SHA384(), 48),
          -36: (ec.SECP521R1(), hashes.SHA512(), 66)}  # fmt: skip


def encoded(key, alg: int, der: bytes, *, tagged=True, float_times=False, kid_unprotected=False) -> str:
    _, hash_, size = CURVES[alg]
    iat, exp = SAMPLE.timestamp() + 60.5, SAMPLE.timestamp() + 86400.25
    claims = {1: "DE", 6: iat if float_times else int(iat), 4: exp if float_times else int(exp)}
    claims[-260] = {1: {**negative_naat_dcc(SAMPLE, "URN:UVCI:01:DE:ENC#1"), "ver": "1.3.0"}}
    payload = cbor2.dumps(claims)
    kid = hkeys.kid_of(der)
    protected = cbor2.dumps({1: alg} if kid_unprotected else {1: alg, 4: kid})
    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(hash_)))
    message = [
        protected,
        {4: kid} if kid_unprotected else {},
        payload,
        r.to_bytes(size, "big") + s.to_bytes(size, "big"),
    ]
    cose = cbor2.dumps(cbor2.CBORTag(18, message) if tagged else message)
    return codec.PREFIX + codec.b45encode(zlib.compress(cose, 9))


def broken(qr: str) -> str:
    cose = bytearray(zlib.decompress(hdecode.b45decode(qr[len(codec.PREFIX) :])))
    cose[-1] ^= 1
    return codec.PREFIX + codec.b45encode(zlib.compress(bytes(cose), 9))


@pytest.mark.parametrize("alg", [-7, -35, -36], ids=["ES256", "ES384", "ES512"])
@pytest.mark.parametrize(
    "encoding",
    [
        {},
        {"tagged": False},
        {"float_times": True},
        {"kid_unprotected": True},
        {"tagged": False, "float_times": True, "kid_unprotected": True},
    ],  # fmt: skip
    ids=["plain", "untagged", "float-times", "kid-unprotected", "all-three"],
)
def test_each_encoding_verifies_and_a_broken_signature_does_not(alg, encoding):
    key = ec.generate_private_key(CURVES[alg][0])
    der = foreign_certificate(key)
    rule = naat_rule("24", SAMPLE - timedelta(days=30), validity_hours=72)
    verifier = Verifier(_Trust(Snapshot([trusted_key(der, "DE", own=False)], [rule], 1)), _NoStatus())
    qr = encoded(key, alg, der, **encoding)
    at = SAMPLE + timedelta(hours=1)
    answer = asyncio.run(verifier.verify(qr, at, "24"))
    assert answer.verdict == "VALID", (answer.verdict, answer.reason, answer.stage)
    assert answer.issuer_country == "DE"
    assert asyncio.run(verifier.verify(broken(qr), at, "24")).verdict == "SIGNATURE_INVALID"
