"""Repeat scans of one QR skip decoding and the signature check, but never the current trust list."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.hcert import codec
from services.hcert import decode as hdecode
from services.hcert import keys as hkeys
from services.verify_svc.status import CACHE, DATABASE, UNCHECKED, Status
from services.verify_svc.trust import Snapshot, trusted_key
from services.verify_svc.verifier import Verifier
from tests.dcc_samples import naat_rule, negative_naat_dcc


class _Trust:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot


class _NoStatus:
    async def status(self, certificate_id):
        return Status(None, UNCHECKED)


def _foreign_qr(material) -> str:
    now = int(time.time())
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "Kim", "fnt": "KIM"},
        "dob": "1990-01-01",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP6464-4",
                "sc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tr": "260415000",
                "tc": "Seoul lab",
                "co": "KR",
                "is": "KDCA",
                "ci": "URN:UVCI:01:KR:CACHE#1",
            }
        ],
    }
    return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)


def test_repeat_scan_is_not_decoded_again_and_follows_the_trust_list(monkeypatch):
    korea = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    other = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    trusted = Snapshot([trusted_key(korea.certificate_der, "KR", False)], [], 1)
    trust = _Trust(trusted)
    verifier = Verifier(trust, _NoStatus())
    calls = {"decode": 0, "signature": 0}
    real_decode, real_verify = hdecode.decode, hdecode.verify_signature

    def counting_decode(qr, **options):
        calls["decode"] += 1
        return real_decode(qr, **options)

    def counting_verify(*args):
        calls["signature"] += 1
        return real_verify(*args)

    monkeypatch.setattr(hdecode, "decode", counting_decode)
    monkeypatch.setattr(hdecode, "verify_signature", counting_verify)
    qr, now = _foreign_qr(korea), datetime.now(UTC)
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


# A VALID test verdict is handed again to repeat scans (`_Answer`), but only while every check and the
# choice of rule version would come out the same; the live status is looked up on every scan.


class _LiveStatus:
    def __init__(self):
        self.now = Status("VALID", CACHE)
        self.lookups = 0

    async def status(self, certificate_id):
        self.lookups += 1
        return self.now


def _own_test_qr(material, sample: datetime) -> str:
    now = int(time.time())
    dcc = negative_naat_dcc(sample, "URN:UVCI:01:VN:ANSWER#1")
    return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 5 * 86400)


def _own_setup(rules):
    vietnam = hkeys.SigningKeyMaterial.generate("ES256", country="VN")
    trust = _Trust(Snapshot([trusted_key(vietnam.certificate_der, "VN", True)], rules, 1))
    status = _LiveStatus()
    return vietnam, trust, status, Verifier(trust, status)


def test_a_valid_answer_is_reused_only_where_every_check_comes_out_the_same():
    now = datetime.now(UTC)
    vietnam, trust, status, verifier = _own_setup([naat_rule("00", now - timedelta(days=30))])
    sample = now - timedelta(hours=1)
    qr = _own_test_qr(vietnam, sample)
    scan = lambda at: asyncio.run(verifier.verify(qr, at, "24"))  # noqa: E731

    first = scan(now)
    assert first.verdict == "VALID" and first.status_source == CACHE
    again = scan(now + timedelta(minutes=5))
    assert again is first and status.lookups == 2  # reused, but the status was looked up again
    assert scan(sample + timedelta(hours=72, seconds=1)).verdict == "EXPIRED"  # past the rule's window
    assert scan(now - timedelta(minutes=10)).verdict == "NOT_YET_VALID"  # before it was issued
    assert scan(now).verdict == "VALID"

    status.now = Status("REVOKED", CACHE)
    assert scan(now).verdict == "REVOKED"
    status.now = Status("VALID", DATABASE)  # Redis down: the answer must say where the status came from
    from_database = scan(now)
    assert from_database.verdict == "VALID" and from_database.status_source == DATABASE

    trust.snapshot = Snapshot(
        trust.snapshot.keys, [naat_rule("00", now - timedelta(days=30), disabled=True, version=2)], 2
    )
    assert scan(now).verdict == "RULE_NOT_MET"  # a new trust snapshot: verified in full


def test_a_rule_version_taking_effect_later_ends_the_reuse_at_that_time():
    now = datetime.now(UTC)
    rules = [
        naat_rule("00", now - timedelta(days=30)),
        naat_rule("24", now + timedelta(hours=1), disabled=True),
    ]  # the province suspends NAAT in an hour
    vietnam, trust, status, verifier = _own_setup(rules)
    qr = _own_test_qr(vietnam, now - timedelta(hours=1))
    scan = lambda at: asyncio.run(verifier.verify(qr, at, "24"))  # noqa: E731

    first = scan(now)
    assert first.verdict == "VALID" and first.rule.province_code == "00"
    assert scan(now + timedelta(minutes=59)) is first
    later = scan(now + timedelta(hours=2))
    assert later.verdict == "RULE_NOT_MET" and later.rule.province_code == "24"
    other_province = asyncio.run(verifier.verify(qr, now + timedelta(hours=2), "01"))
    assert other_province.verdict == "VALID"  # the suspension is province 24's only


class _RefillingStatus(_LiveStatus):
    """Redis lost the status: the first lookup reads Postgres (and refills Redis), any later one finds it
    in Redis."""

    def __init__(self):
        super().__init__()
        self.next: list[Status] = []

    async def status(self, certificate_id):
        self.lookups += 1
        return self.next.pop(0) if self.next else self.now


def test_a_remembered_answer_that_is_revoked_now_says_where_its_status_came_from():
    """The scan that finds a remembered VALID answer revoked tells the status it looked up (read from
    Postgres after a miss), not that of a second lookup which finds the refill the first one made."""
    now = datetime.now(UTC)
    vietnam = hkeys.SigningKeyMaterial.generate("ES256", country="VN")
    trust = _Trust(Snapshot([trusted_key(vietnam.certificate_der, "VN", True)], [naat_rule("00", now)], 1))
    status = _RefillingStatus()
    verifier = Verifier(trust, status)
    qr = _own_test_qr(vietnam, now - timedelta(hours=1))
    assert asyncio.run(verifier.verify(qr, now, "24")).status_source == CACHE  # remembered
    status.next = [Status("REVOKED", DATABASE)]
    status.now = Status("REVOKED", CACHE)
    lookups = status.lookups
    revoked = asyncio.run(verifier.verify(qr, now, "24"))
    assert revoked.verdict == "REVOKED" and revoked.status_source == DATABASE
    assert status.lookups == lookups + 1  # one lookup for one scan
