"""Verdict precedence and the certificate's own `exp`, in-process (no database, no Redis).

Precedence (docs/design.md §5): … SIGNATURE_INVALID → REVOKED → EXPIRED / NOT_YET_VALID by the
certificate's own `exp` / `iat` → … → EXPIRED / NOT_YET_VALID by the province rule's window → VALID.
Every clock is pinned: certificates, keys and rules carry fixed times, and each scan passes its time.
"""

import asyncio
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from services.hcert import codec
from services.hcert import decode as hdecode
from services.hcert import keys as hkeys
from services.verify_svc.status import CACHE, Status
from services.verify_svc.trust import Rule, Snapshot, trusted_key
from services.verify_svc.verifier import Verifier
from tests.dcc_samples import naat_rule, negative_naat_dcc

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # the sample collection time
PROVINCE = "24"


class _Trust:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot


class _FixedStatus:
    def __init__(self, status: str):
        self.answer = Status(status, CACHE)

    async def status(self, certificate_id):
        return self.answer


def _naat_rule(validity_hours: int = 72) -> Rule:
    return naat_rule(PROVINCE, T0 - timedelta(days=30), validity_hours=validity_hours)


def _signing_key() -> hkeys.SigningKeyMaterial:
    return hkeys.SigningKeyMaterial.generate("ES256", validity=timedelta(days=365), not_before=T0 - timedelta(days=1))


def _own_qr(material, *, issued: datetime, expires: datetime) -> str:
    dcc = negative_naat_dcc(T0, "URN:UVCI:01:VN:INVARIANT#1")
    return codec.encode_hcert(
        dcc, signer=codec.Signer(material), issued_at=int(issued.timestamp()), expires_at=int(expires.timestamp())
    )


def _with_broken_signature(qr: str) -> str:
    """The same QR with the last byte of its ES256 signature (the end of the COSE message) changed."""
    cose = bytearray(zlib.decompress(hdecode.b45decode(qr[len(codec.PREFIX) :])))
    cose[-1] ^= 0x01
    return codec.PREFIX + codec.b45encode(zlib.compress(bytes(cose), 9))


def _verifier(material, live_status: str) -> Verifier:
    snapshot = Snapshot([trusted_key(material.certificate_der, "VN", True)], [_naat_rule()], 1)
    return Verifier(_Trust(snapshot), _FixedStatus(live_status))


def _scan(verifier: Verifier, qr: str, at: datetime):
    return asyncio.run(verifier.verify(qr, at, PROVINCE))


def test_revoked_and_expired_answers_revoked():
    material = _signing_key()
    issued, expires = T0 + timedelta(hours=1), T0 + timedelta(days=1)
    qr = _own_qr(material, issued=issued, expires=expires)
    after_expiry = expires + timedelta(hours=6)  # the rule's 72 h would still accept the sample

    # The controls: each condition alone gives its own verdict.
    assert _scan(_verifier(material, "VALID"), qr, issued + timedelta(hours=1)).verdict == "VALID"
    assert _scan(_verifier(material, "VALID"), qr, after_expiry).verdict == "EXPIRED"
    assert _scan(_verifier(material, "REVOKED"), qr, issued + timedelta(hours=1)).verdict == "REVOKED"

    both = _scan(_verifier(material, "REVOKED"), qr, after_expiry)
    assert both.verdict == "REVOKED", both.reason


@pytest.mark.parametrize("live_status", ["VALID", "REVOKED"])
def test_invalid_signature_and_expired_answers_signature_invalid(live_status):
    material = _signing_key()
    issued, expires = T0 + timedelta(hours=1), T0 + timedelta(days=1)
    genuine = _own_qr(material, issued=issued, expires=expires)
    forged = _with_broken_signature(genuine)
    after_expiry = expires + timedelta(hours=6)

    # The controls: the genuine QR is merely expired; the forged one, scanned in time, is refused.
    assert _scan(_verifier(material, "VALID"), genuine, after_expiry).verdict == "EXPIRED"
    in_time = _scan(_verifier(material, "VALID"), forged, issued + timedelta(hours=1))
    assert in_time.verdict == "SIGNATURE_INVALID"

    both = _scan(_verifier(material, live_status), forged, after_expiry)
    assert both.verdict == "SIGNATURE_INVALID", both.reason


def test_the_certificates_own_exp_wins_over_a_longer_rule_window():
    material = _signing_key()
    issued, expires = T0 + timedelta(hours=1), T0 + timedelta(hours=2)  # CWT exp: sample + 2 h
    qr = _own_qr(material, issued=issued, expires=expires)
    at = T0 + timedelta(hours=10)  # after exp, well inside the rule's 72 h (sample + 72 h)
    assert expires < at < T0 + timedelta(hours=72)

    before = _scan(_verifier(material, "VALID"), qr, expires - timedelta(minutes=1))
    assert before.verdict == "VALID" and before.valid_until == expires  # the window ends at exp, not the rule's

    verdict = _scan(_verifier(material, "VALID"), qr, at)
    assert verdict.verdict == "EXPIRED", verdict.reason
    assert verdict.reason == "the certificate has expired"  # by the certificate's exp, not the rule


def test_sample_times_parse_as_rfc_3339_writes_them():
    from datetime import UTC, datetime

    from services.verify_svc.verifier import _parse_time

    assert _parse_time("2016-12-31T23:59:60Z") == datetime(2017, 1, 1, tzinfo=UTC)  # a leap second
    assert _parse_time("2021-08-01t09:15:30+07:00") == datetime(2021, 8, 1, 2, 15, 30, tzinfo=UTC)
    assert _parse_time("2021-08-01T02:15:30.5z") == datetime(2021, 8, 1, 2, 15, 30, 500000, tzinfo=UTC)
    assert _parse_time("2021-08-01T02:15:61Z") is None and _parse_time("") is None and _parse_time(None) is None
