"""Repeat scans of one QR skip decoding and the signature check, but never the current trust list."""

import asyncio
import time
from datetime import datetime, timezone

from services.common.hcert import codec, decode as hdecode, keys as hkeys
from services.verify_svc.status import UNCHECKED, Status
from services.verify_svc.trust import Snapshot, trusted_key
from services.verify_svc.verifier import Verifier


class _Trust:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot


class _NoStatus:
    async def status(self, certificate_id):
        return Status(None, UNCHECKED)


def _foreign_qr(material) -> str:
    now = int(time.time())
    dcc = {"ver": "1.3.0", "nam": {"fn": "Kim", "fnt": "KIM"}, "dob": "1990-01-01", "t": [{
        "tg": "840539006", "tt": "LP6464-4", "sc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tr": "260415000", "tc": "Seoul lab", "co": "KR", "is": "KDCA", "ci": "URN:UVCI:01:KR:CACHE#1"}]}
    return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)


def test_repeat_scan_is_not_decoded_again_and_follows_the_trust_list(monkeypatch):
    korea = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    other = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    trusted = Snapshot([trusted_key(korea.certificate_der, "KR", False)], [], 1)
    trust = _Trust(trusted)
    verifier = Verifier(trust, _NoStatus())
    calls = {"decode": 0, "signature": 0}
    real_decode, real_verify = hdecode.decode, hdecode.verify_signature

    def counting_decode(qr):
        calls["decode"] += 1
        return real_decode(qr)

    def counting_verify(*args):
        calls["signature"] += 1
        return real_verify(*args)

    monkeypatch.setattr(hdecode, "decode", counting_decode)
    monkeypatch.setattr(hdecode, "verify_signature", counting_verify)
    qr, now = _foreign_qr(korea), datetime.now(timezone.utc)
    scan = lambda text: asyncio.run(verifier.verify(text, now, "24"))  # noqa: E731

    first, second = scan(qr), scan(qr)
    assert calls == {"decode": 1, "signature": 1}
    assert first == second and first.issuer_country == "KR" and first.holder["family_name"] == "Kim"

    forged = _foreign_qr(other)  # another QR (an untrusted key): not in the cache, decoded afresh
    assert scan(forged).verdict == "UNKNOWN_ISSUER" and calls["decode"] == 2

    trust.snapshot = Snapshot([], [], 2)  # the operator removed the certificate
    assert scan(qr).verdict == "UNKNOWN_ISSUER"
    trust.snapshot = trusted
    assert scan(qr).verdict == first.verdict and calls["decode"] == 3
